//! Domain types and rules: what a valid account, scope, customer, list
//! query, settings document, tag, token and terms record are, independent of
//! HTTP and of the database.

/// Declares a request body that also takes the server-set entity fields
/// (`id`, `created_at`, `created_by`, `updated_at`, `deleted_at`,
/// `deleted_by`) and ignores them (§4.1), so a client can post back a
/// resource it read; every other unknown field is still refused. A body
/// that checks `id` itself declares it and starts with `own_id`.
macro_rules! entity_input {
    (
        $(#[$meta:meta])*
        pub struct $name:ident { $($(#[$field_meta:meta])* pub $field:ident: $ty:ty,)* }
    ) => {
        entity_input! {
            own_id
            $(#[$meta])*
            pub struct $name {
                $($(#[$field_meta])* pub $field: $ty,)*
                /// Server-set: ignored in requests.
                #[serde(default)]
                #[schema(value_type = Option<String>, read_only)]
                pub id: Option<serde::de::IgnoredAny>,
            }
        }
    };
    (
        own_id
        $(#[$meta:meta])*
        pub struct $name:ident { $($(#[$field_meta:meta])* pub $field:ident: $ty:ty,)* }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Default, serde::Deserialize, utoipa::ToSchema)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            $($(#[$field_meta])* pub $field: $ty,)*
            /// Server-set: ignored in requests.
            #[serde(default)]
            #[schema(value_type = Option<String>, format = DateTime, read_only)]
            pub created_at: Option<serde::de::IgnoredAny>,
            /// Server-set: ignored in requests.
            #[serde(default)]
            #[schema(value_type = Option<String>, read_only)]
            pub created_by: Option<serde::de::IgnoredAny>,
            /// Server-set: ignored in requests.
            #[serde(default)]
            #[schema(value_type = Option<String>, format = DateTime, read_only)]
            pub updated_at: Option<serde::de::IgnoredAny>,
            /// Server-set: ignored in requests.
            #[serde(default)]
            #[schema(value_type = Option<String>, format = DateTime, read_only)]
            pub deleted_at: Option<serde::de::IgnoredAny>,
            /// Server-set: ignored in requests.
            #[serde(default)]
            #[schema(value_type = Option<String>, read_only)]
            pub deleted_by: Option<serde::de::IgnoredAny>,
        }
    };
}

pub mod body;
pub mod customer;
pub mod events;
pub mod hooks;
pub mod ids;
pub mod listing;
pub mod patch;
pub mod records;
pub mod settings;
pub mod stored;
pub mod strict;
pub mod time;
pub mod validate;

/// Lower-case hexadecimal, for digests shown to people and stored as text.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
