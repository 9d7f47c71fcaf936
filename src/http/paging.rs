//! The headers every list answers with: `total-count` when asked for, and
//! `Link: <…>; rel="next"` while more results exist.

use axum::http::{header, HeaderMap, HeaderName, HeaderValue};

/// `next` is the parameter that moves the cursor and its new value; the
/// other query parameters are kept as they were.
pub fn page_headers(
    path: &str,
    pairs: &[(String, String)],
    next: Option<(&str, String)>,
    total: Option<i64>,
) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Some(total) = total {
        headers.insert(HeaderName::from_static("total-count"), HeaderValue::from(total));
    }
    if let Some((key, value)) = next {
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (k, v) in pairs.iter().filter(|(k, _)| k != key) {
            query.append_pair(k, v);
        }
        query.append_pair(key, &value);
        let link = format!("<{path}?{}>; rel=\"next\"", query.finish());
        if let Ok(value) = HeaderValue::from_str(&link) {
            headers.insert(header::LINK, value);
        }
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_replaces_the_cursor_and_keeps_the_rest() {
        let pairs = vec![("email".to_owned(), "a+b@x".to_owned()), ("starting_after".to_owned(), "old".to_owned())];
        let headers = page_headers("/v1/x", &pairs, Some(("starting_after", "new".to_owned())), Some(7));
        assert_eq!(headers["total-count"], "7");
        assert_eq!(headers[header::LINK], "</v1/x?email=a%2Bb%40x&starting_after=new>; rel=\"next\"");
        assert!(page_headers("/v1/x", &pairs, None, None).is_empty());
    }
}
