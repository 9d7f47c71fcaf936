//! Request bodies as JSON: the shape a body must open with, strict
//! deserialisation (no coercion of JSON types, see `strict`), and serde's
//! first complaint turned into a field error. Shared by the HTTP layer and
//! the importer, which reads one create body per line.

use serde::de::DeserializeOwned;

use super::strict::Strict;
use super::validate::FieldError;

/// Why a body was refused.
#[derive(Debug, PartialEq)]
pub enum BodyError {
    /// Not JSON at all (or cut short).
    NotJson,
    /// JSON, but not of the expected shape: the fields at fault.
    Invalid(Vec<FieldError>),
}

impl BodyError {
    /// One line for a person: the fields and what is wrong with each.
    pub fn describe(&self) -> String {
        match self {
            BodyError::NotJson => "the request body is not valid JSON".to_owned(),
            BodyError::Invalid(errors) => {
                errors.iter().map(|f| format!("{}: {}", f.field, f.message)).collect::<Vec<_>>().join("; ")
            }
        }
    }
}

/// The JSON value a body must be.
#[derive(Debug, Clone, Copy)]
pub enum Shape {
    Object,
    Array,
}

/// Deserialises a body that must be a JSON `shape`. (serde would also
/// accept an array for a struct, by position; the contract's bodies are
/// objects.)
pub fn parse<T: DeserializeOwned>(bytes: &[u8], shape: Shape) -> Result<T, BodyError> {
    let (opening, name) = match shape {
        Shape::Object => (b'{', "a JSON object"),
        Shape::Array => (b'[', "a JSON array"),
    };
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        None => return Err(BodyError::NotJson),
        Some(b) if *b == opening => {}
        Some(_) if serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_err() => return Err(BodyError::NotJson),
        Some(_) => {
            return Err(BodyError::Invalid(vec![FieldError::new("body", "invalid_type", format!("must be {name}"))]));
        }
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    // Strict: a struct only from an object (§3: no coercion of JSON types).
    let value = serde_path_to_error::deserialize(Strict(&mut deserializer)).map_err(|error| {
        let inner = error.inner();
        let well_formed = || serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok();
        if inner.is_eof() || (inner.is_syntax() && !well_formed()) {
            return BodyError::NotJson;
        }
        let path = error.path().to_string();
        if inner.is_syntax() {
            // serde_json reports a non-string where an enum's name belongs
            // as a syntax error ("expected value"), though the JSON is fine.
            let field = if path == "." { "body".to_owned() } else { path };
            return BodyError::Invalid(vec![FieldError::new(field, "invalid_type", "has the wrong JSON type")]);
        }
        BodyError::Invalid(vec![field_error(&path, inner)])
    })?;
    deserializer.end().map_err(|_| BodyError::NotJson)?;
    Ok(value)
}

fn field_error(path: &str, error: &serde_json::Error) -> FieldError {
    let text = error.to_string();
    let message = text.split(" at line ").next().unwrap_or(&text).to_owned();
    let parent = if path == "." { "" } else { path };
    // serde_path_to_error's path already ends at an unknown field, but stops
    // at the parent of a missing one.
    let (field, code) = if message.starts_with("unknown field") {
        (parent.to_owned(), "unknown_field")
    } else if let Some(name) = message.strip_prefix("missing field `").and_then(|r| r.split('`').next()) {
        (join_path(parent, name), "required")
    } else if message.starts_with("invalid type") {
        (parent.to_owned(), "invalid_type")
    } else {
        (parent.to_owned(), "invalid_value")
    };
    FieldError::new(if field.is_empty() { "body".to_owned() } else { field }, code, message)
}

fn join_path(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_owned()
    } else {
        format!("{parent}.{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::customer::CustomerInput;

    fn error_of(body: &str) -> BodyError {
        parse::<CustomerInput>(body.as_bytes(), Shape::Object).unwrap_err()
    }

    #[test]
    fn syntax_errors_are_not_json() {
        for body in ["{", "", "{\"first_name\":}", "{} trailing"] {
            assert_eq!(error_of(body), BodyError::NotJson, "{body}");
        }
    }

    #[test]
    fn shape_errors_name_the_field() {
        let cases = [
            (r#"{"frist_name":"a"}"#, "frist_name", "unknown_field"),
            (r#"{"first_name":1}"#, "first_name", "invalid_type"),
            (r#"{"type":"person"}"#, "type", "invalid_value"),
            (r#"{"addresses":[{"address_line":"a","country":"NO"}]}"#, "addresses[0].postal_place", "required"),
            (r#"{"date_of_birth":"2020-02-30"}"#, "date_of_birth", "invalid_value"),
            (r#"{"date_of_birth":"1990-1-1"}"#, "date_of_birth", "invalid_value"),
            (r#"{"marketing_consent":[]}"#, "marketing_consent", "invalid_type"),
            (r#"{"type":42}"#, "type", "invalid_type"),
            (
                r#"{"addresses":[{"address_line":"a","postal_place":"b","country":"NO","type":[]}]}"#,
                "addresses[0].type",
                "invalid_type",
            ),
            (r#"{"addresses":[["Gate 1", null, null, "Oslo", "NO"]]}"#, "addresses[0]", "invalid_type"),
            ("[]", "body", "invalid_type"),
        ];
        for (body, field, code) in cases {
            let BodyError::Invalid(errors) = error_of(body) else { panic!("{body}: not a field error") };
            assert_eq!((errors[0].field.as_str(), errors[0].code.as_str()), (field, code), "{body}");
        }
    }

    #[test]
    fn an_array_body_must_be_an_array() {
        assert_eq!(parse::<Vec<u32>>(b" [1, 2]", Shape::Array).unwrap(), vec![1, 2]);
        let BodyError::Invalid(errors) = parse::<Vec<u32>>(b"{}", Shape::Array).unwrap_err() else { panic!() };
        assert_eq!(errors[0].message, "must be a JSON array");
    }
}
