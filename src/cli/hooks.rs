//! `customers hooks verify`: checks a received delivery's signatures, for
//! the developer of a receiver testing their endpoint.

use std::io::Read;

use clap::{Args, Subcommand};

use crate::domain::hooks::verify;

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Read a delivery from standard input — its headers (`name: value`
    /// lines, an HTTP request line first is skipped), a blank line, then
    /// its body — and say whether both signatures verify with the secret.
    /// Exits 0 when both do, 1 otherwise.
    Verify(VerifyOpts),
}

#[derive(Args, Debug)]
pub struct VerifyOpts {
    /// The subscription's secret.
    #[arg(long, env = "CUSTOMERS_WEBHOOK_SECRET")]
    pub secret: String,
}

pub async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Verify(opts) => {
            let mut input = Vec::new();
            std::io::stdin().read_to_end(&mut input)?;
            let report = check(&opts.secret, &input);
            println!("{}", serde_json::to_string_pretty(&report.json())?);
            if !report.verified() {
                std::process::exit(1);
            }
            Ok(())
        }
    }
}

/// What was found in a delivery.
#[derive(Debug, PartialEq)]
pub struct Report {
    /// `None`: the header is missing.
    pub event_signature: Option<bool>,
    pub webhook_signature: Option<bool>,
    /// Seconds between `webhook-timestamp` and now (receivers should refuse
    /// old deliveries: the Standard Webhooks advice is five minutes).
    pub age_seconds: Option<i64>,
}

impl Report {
    pub fn verified(&self) -> bool {
        self.event_signature == Some(true) && self.webhook_signature == Some(true)
    }

    fn json(&self) -> serde_json::Value {
        let said = |v: Option<bool>| match v {
            Some(true) => "valid",
            Some(false) => "INVALID",
            None => "missing",
        };
        serde_json::json!({
            "event-signature": said(self.event_signature),
            "webhook-signature": said(self.webhook_signature),
            "webhook-timestamp age (s)": self.age_seconds,
            "verified": self.verified(),
        })
    }
}

/// Checks a delivery as read: headers, a blank line, the body.
pub fn check(secret: &str, input: &[u8]) -> Report {
    let (head, body) = split_message(input);
    let text = String::from_utf8_lossy(head);
    let mut headers = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if i == 0 && line.contains(" HTTP/") {
            continue;
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    let header = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    let id = header("webhook-id").unwrap_or_default();
    let timestamp = header("webhook-timestamp").and_then(|t| t.parse::<i64>().ok());
    let (sha1, sha256) = verify(
        secret,
        id,
        timestamp.unwrap_or_default(),
        body,
        header("event-signature").unwrap_or_default(),
        header("webhook-signature").unwrap_or_default(),
    );
    Report {
        event_signature: header("event-signature").map(|_| sha1),
        webhook_signature: header("webhook-signature").map(|_| sha256 && timestamp.is_some() && !id.is_empty()),
        age_seconds: timestamp.map(|t| chrono::Utc::now().timestamp() - t),
    }
}

/// The header block and the body of an HTTP message (CRLF or LF lines).
fn split_message(input: &[u8]) -> (&[u8], &[u8]) {
    for separator in [&b"\r\n\r\n"[..], b"\n\n"] {
        if let Some(at) = input.windows(separator.len()).position(|w| w == separator) {
            return (&input[..at], &input[at + separator.len()..]);
        }
    }
    (input, &[])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::hooks::Signatures;

    fn delivery(secret: &str, body: &str, crlf: bool) -> Vec<u8> {
        let now = chrono::Utc::now().timestamp();
        let signed = Signatures::sign(secret, "evt-1", now, body.as_bytes());
        let lines = [
            "POST /hooks HTTP/1.1".to_owned(),
            "Content-Type: application/json".to_owned(),
            "webhook-id: evt-1".to_owned(),
            format!("webhook-timestamp: {now}"),
            format!("Event-Signature: {}", signed.event_signature),
            format!("webhook-signature: {}", signed.webhook_signature),
        ];
        let newline = if crlf { "\r\n" } else { "\n" };
        format!("{}{newline}{newline}{body}", lines.join(newline)).into_bytes()
    }

    #[test]
    fn a_delivery_verifies_with_its_secret_only() {
        let body = "{\"id\":\"evt-1\",\"data\":{\"note\":\"line\\n\\nbreaks\"}}";
        for crlf in [true, false] {
            let report = check("0123456789abcdef", &delivery("0123456789abcdef", body, crlf));
            assert!(report.verified(), "{report:?}");
            assert!(report.age_seconds.is_some_and(|age| (0..5).contains(&age)));
            let wrong = check("another-secret-0000", &delivery("0123456789abcdef", body, crlf));
            assert_eq!((wrong.event_signature, wrong.webhook_signature), (Some(false), Some(false)));
        }
        let mut tampered = delivery("0123456789abcdef", body, false);
        tampered.pop();
        assert!(!check("0123456789abcdef", &tampered).verified());
        let unsigned = check("0123456789abcdef", b"content-type: application/json\n\n{}");
        assert_eq!((unsigned.event_signature, unsigned.webhook_signature), (None, None));
        assert!(!unsigned.verified());
    }
}
