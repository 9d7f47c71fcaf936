//! `Patch<T>`: a request field that is absent, explicitly `null`, or a value.
//! The update rules of §4.2 ("absent stays, `null` clears") need all three.

use serde::{Deserialize, Deserializer};

#[derive(Debug, Clone, Default, PartialEq)]
pub enum Patch<T> {
    #[default]
    Absent,
    Null,
    Value(T),
}

impl<T> Patch<T> {
    /// The value a create takes: absent and `null` both mean "not set".
    pub fn into_option(self) -> Option<T> {
        match self {
            Patch::Value(v) => Some(v),
            Patch::Absent | Patch::Null => None,
        }
    }

    pub fn as_value(&self) -> Option<&T> {
        match self {
            Patch::Value(v) => Some(v),
            _ => None,
        }
    }

    pub fn is_absent(&self) -> bool {
        matches!(self, Patch::Absent)
    }

    /// Applies the patch to a current value.
    pub fn apply_to(self, current: Option<T>) -> Option<T> {
        match self {
            Patch::Absent => current,
            Patch::Null => None,
            Patch::Value(v) => Some(v),
        }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Patch<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Only reached when the key is present (absent keys use `Default`).
        Ok(match Option::<T>::deserialize(deserializer)? {
            Some(v) => Patch::Value(v),
            None => Patch::Null,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Body {
        #[serde(default)]
        name: Patch<String>,
    }

    fn parse(json: &str) -> Patch<String> {
        serde_json::from_str::<Body>(json).unwrap().name
    }

    #[test]
    fn absent_null_and_value_are_distinguished() {
        assert_eq!(parse("{}"), Patch::Absent);
        assert_eq!(parse(r#"{"name":null}"#), Patch::Null);
        assert_eq!(parse(r#"{"name":"a"}"#), Patch::Value("a".into()));
    }

    #[test]
    fn only_an_absent_patch_is_absent() {
        assert!(Patch::<u8>::Absent.is_absent());
        assert!(!Patch::<u8>::Null.is_absent() && !Patch::Value(1).is_absent());
    }

    #[test]
    fn apply_keeps_clears_or_sets() {
        let current = Some("old".to_string());
        assert_eq!(Patch::Absent.apply_to(current.clone()), current);
        assert_eq!(Patch::<String>::Null.apply_to(current.clone()), None);
        assert_eq!(Patch::Value("new".to_string()).apply_to(current), Some("new".into()));
    }
}
