//! Identifier newtypes. Each has one constructor that validates, so an invalid
//! account id or scope cannot exist past the HTTP boundary.

use std::fmt;

use serde::Serialize;

/// An account (tenant) id: `T` (test) or `P` (production) and eight digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct AccountId(String);

impl AccountId {
    pub fn parse(raw: &str) -> Option<Self> {
        let bytes = raw.as_bytes();
        let valid = bytes.len() == 9 && matches!(bytes[0], b'T' | b'P') && bytes[1..].iter().all(u8::is_ascii_digit);
        valid.then(|| Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The scopes of §2. Anything else in a token is kept out by `Scope::parse`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    Admin,
    Read,
    Write,
    CreateUsers,
    User,
    /// `user:customers:/customer/details`: GET of the caller's own record.
    UserDetails,
    /// `admin:accounts`: may change a customer's `customer_id`.
    AdminAccounts,
    Public,
    /// `admin:hooks`: everything about webhook subscriptions (§11).
    HooksAdmin,
    /// `write:hooks`: create, change, delete, ping and redeliver.
    HooksWrite,
    /// `read:hooks`: read subscriptions and their deliveries.
    HooksRead,
}

impl Scope {
    pub const ALL: [Scope; 11] = [
        Scope::Admin,
        Scope::Read,
        Scope::Write,
        Scope::CreateUsers,
        Scope::User,
        Scope::UserDetails,
        Scope::AdminAccounts,
        Scope::Public,
        Scope::HooksAdmin,
        Scope::HooksWrite,
        Scope::HooksRead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Admin => "admin:customers",
            Scope::Read => "read:customers",
            Scope::Write => "write:customers",
            Scope::CreateUsers => "create:customers:/users",
            Scope::User => "user:customers",
            Scope::UserDetails => "user:customers:/customer/details",
            Scope::AdminAccounts => "admin:accounts",
            Scope::Public => "public:customers",
            Scope::HooksAdmin => "admin:hooks",
            Scope::HooksWrite => "write:hooks",
            Scope::HooksRead => "read:hooks",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }

    /// Parses a space-separated scope list; unknown scopes are an error so a
    /// typo on the CLI does not mint a client that can do nothing.
    pub fn parse_list(raw: &str) -> Result<Vec<Scope>, String> {
        let mut scopes = Vec::new();
        for word in raw.split_whitespace() {
            let scope = Scope::parse(word).ok_or_else(|| {
                let known: Vec<_> = Self::ALL.iter().map(|s| s.as_str()).collect();
                format!("unknown scope `{word}`; known scopes: {}", known.join(" "))
            })?;
            if !scopes.contains(&scope) {
                scopes.push(scope);
            }
        }
        if scopes.is_empty() {
            return Err("at least one scope is required".into());
        }
        Ok(scopes)
    }

    pub fn join(scopes: &[Scope]) -> String {
        scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_ids_are_t_or_p_and_eight_digits() {
        assert!(AccountId::parse("T00000001").is_some());
        assert!(AccountId::parse("P12345678").is_some());
        for bad in ["", "T0000001", "T000000011", "X00000001", "t00000001", "T0000000a"] {
            assert!(AccountId::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn scope_lists_reject_unknown_words_and_dedupe() {
        let scopes = Scope::parse_list("read:customers  read:customers write:customers").unwrap();
        assert_eq!(scopes, vec![Scope::Read, Scope::Write]);
        assert!(Scope::parse_list("read:customer").is_err());
        assert!(Scope::parse_list("   ").is_err());
    }
}
