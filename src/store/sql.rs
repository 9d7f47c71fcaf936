//! The SQL builder both backends share: statements written once with
//! parameters bound as they are pushed, rendered with each dialect's
//! placeholders (`$1` or `?`), and the small helpers every flow uses.

use chrono::{DateTime, Utc};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// A bound value; each store binds these with its own native types.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    Text(String),
    Int(i64),
    Time(DateTime<Utc>),
    Id(Uuid),
    /// JSON text, serialised once when the value is made (see [`Param::json`]).
    Json(JsonText),
    Bytes(Vec<u8>),
    /// A text-typed NULL.
    Null,
    /// A timestamp-typed NULL.
    NullTime,
    /// A JSON-typed NULL.
    NullJson,
    /// A UUID-typed NULL.
    NullId,
    /// An integer-typed NULL.
    NullInt,
}

impl Param {
    /// A value as JSON text. Serialised here, once, straight from the value
    /// (a struct keeps its field order): binding then only copies the text.
    pub fn json(value: &impl serde::Serialize) -> Result<Param, serde_json::Error> {
        serde_json::value::to_raw_value(value).map(|raw| Param::Json(JsonText(raw)))
    }
}

/// Serialised JSON, compared by its text.
#[derive(Debug, Clone)]
pub struct JsonText(Box<serde_json::value::RawValue>);

impl JsonText {
    pub fn as_str(&self) -> &str {
        self.0.get()
    }

    pub fn raw(&self) -> &serde_json::value::RawValue {
        &self.0
    }

    pub fn into_string(self) -> String {
        Box::<str>::from(self.0).into_string()
    }
}

impl PartialEq for JsonText {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

pub fn text(value: &str) -> Param {
    Param::Text(value.to_owned())
}

pub fn opt_text(value: Option<&String>) -> Param {
    value.map_or(Param::Null, |v| Param::Text(v.clone()))
}

/// SQL text plus its parameters, with placeholders in the dialect's style.
#[derive(Debug)]
pub struct SqlBuilder {
    dialect: Dialect,
    sql: String,
    params: Vec<Param>,
}

impl SqlBuilder {
    pub fn new(dialect: Dialect, sql: &str) -> Self {
        Self { dialect, sql: sql.to_owned(), params: Vec::new() }
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    pub fn push(&mut self, sql: &str) -> &mut Self {
        self.sql.push_str(sql);
        self
    }

    pub fn bind(&mut self, param: Param) -> &mut Self {
        self.params.push(param);
        match self.dialect {
            Dialect::Sqlite => self.sql.push('?'),
            Dialect::Postgres => {
                self.sql.push('$');
                self.sql.push_str(&self.params.len().to_string());
            }
        }
        self
    }

    pub fn sql(&self) -> &str {
        &self.sql
    }

    /// The SQL text and the parameters, for a store to bind them without
    /// copying.
    pub fn into_parts(self) -> (String, Vec<Param>) {
        (self.sql, self.params)
    }

    pub fn params(&self) -> &[Param] {
        &self.params
    }
}

/// Binds `params` separated by commas (an `IN (…)` list or a `VALUES` row).
pub fn push_list(q: &mut SqlBuilder, params: impl IntoIterator<Item = Param>) {
    for (i, param) in params.into_iter().enumerate() {
        if i > 0 {
            q.push(", ");
        }
        q.bind(param);
    }
}

/// Binds `col = value` pairs separated by commas (an `UPDATE … SET` list).
pub fn push_assignments<'a>(q: &mut SqlBuilder, pairs: impl IntoIterator<Item = (&'a str, Param)>) {
    for (i, (column, param)) in pairs.into_iter().enumerate() {
        if i > 0 {
            q.push(", ");
        }
        q.push(column).push(" = ").bind(param);
    }
}

/// Columns every customer query selects, in `rows::CustomerRow` order.
pub const CUSTOMER_COLUMNS: &str =
    "c.id, c.customer_id, c.doc, c.created_at, c.created_by, c.updated_at, c.deleted_at, c.deleted_by";

/// The keyset step of a newest-first list: rows after (`at`, `key`).
pub(super) fn push_desc_cursor(q: &mut SqlBuilder, time_column: &str, at: DateTime<Utc>, key_column: &str, key: Param) {
    q.push(" AND ")
        .push(time_column)
        .push(" <= ")
        .bind(Param::Time(at))
        .push(" AND (")
        .push(time_column)
        .push(" < ")
        .bind(Param::Time(at))
        .push(" OR ")
        .push(key_column)
        .push(" > ")
        .bind(key)
        .push(")");
}

/// A caller's JSON object as a parameter, SQL `NULL` when absent.
pub(super) fn json_or_null(value: &Option<crate::domain::customer::JsonObject>) -> Result<Param, super::StoreError> {
    Ok(value.as_ref().map(Param::json).transpose()?.unwrap_or(Param::NullJson))
}
