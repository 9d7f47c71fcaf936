//! The customer list filter (§4.3) turned into SQL — the one place where a
//! filter becomes a `WHERE` clause, shared by both backends. Prefixes become
//! index ranges (`col >= lo AND col < hi`) rather than `LIKE`, which keeps
//! them on an index in SQLite and in PostgreSQL's generic plans.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::domain::customer::CustomerType;
use crate::domain::ids::AccountId;
use crate::domain::listing::{CustomerFilter, ListParams, Prefix, TypeFilter};

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
    Json(serde_json::Value),
    Bytes(Vec<u8>),
    /// A text-typed NULL.
    Null,
    /// A timestamp-typed NULL.
    NullTime,
    /// A JSON-typed NULL.
    NullJson,
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

/// Where the previous page ended, in the default order.
#[derive(Debug, Clone)]
pub struct CursorPosition {
    pub created_at: DateTime<Utc>,
    pub id: Uuid,
}

/// One page of matches: `limit + 1` rows so the caller can tell whether
/// another page exists.
pub fn list_page(
    dialect: Dialect,
    account: &AccountId,
    params: &ListParams,
    cursor: Option<&CursorPosition>,
) -> SqlBuilder {
    let mut q = SqlBuilder::new(dialect, "SELECT ");
    q.push(CUSTOMER_COLUMNS).push(" FROM customers c WHERE ");
    push_filter(&mut q, account, &params.filter);
    if params.filter.since.is_some() {
        // The change feed: oldest change first (§4.3 since_datetime).
        q.push(" ORDER BY c.updated_at ASC, c.id ASC");
    } else {
        if let Some(cursor) = cursor {
            // Matches the (account_id, created_at DESC, id) index; a row
            // comparison would not, because the directions are mixed.
            q.push(" AND c.created_at <= ")
                .bind(Param::Time(cursor.created_at))
                .push(" AND (c.created_at < ")
                .bind(Param::Time(cursor.created_at))
                .push(" OR c.id > ")
                .bind(Param::Id(cursor.id))
                .push(")");
        }
        q.push(" ORDER BY c.created_at DESC, c.id ASC");
    }
    q.push(" LIMIT ").bind(Param::Int(i64::from(params.limit) + 1));
    q
}

/// The number of all matches, ignoring paging.
pub fn count(dialect: Dialect, account: &AccountId, filter: &CustomerFilter) -> SqlBuilder {
    let mut q = SqlBuilder::new(dialect, "SELECT count(*) FROM customers c WHERE ");
    push_filter(&mut q, account, filter);
    q
}

fn push_filter(q: &mut SqlBuilder, account: &AccountId, filter: &CustomerFilter) {
    q.push("c.account_id = ").bind(Param::Text(account.as_str().to_owned()));
    if !filter.include_deleted {
        q.push(" AND c.deleted_at IS NULL");
    }
    match filter.types {
        TypeFilter::Any => {}
        TypeFilter::AllButContacts => {
            q.push(" AND c.type <> ").bind(Param::Text(CustomerType::Contact.as_str().into()));
        }
        TypeFilter::Only(t) => {
            q.push(" AND c.type = ").bind(Param::Text(t.as_str().into()));
        }
    }
    if let Some(prefix) = &filter.email {
        q.push(" AND ");
        push_range(q, "c.email_lower", prefix);
    }
    if let Some(prefix) = &filter.phone_number {
        q.push(" AND ");
        push_range(q, "c.phone_number", prefix);
    }
    if let Some(prefix) = &filter.search {
        q.push(" AND (");
        for (i, column) in SEARCH_COLUMNS.iter().enumerate() {
            if i > 0 {
                q.push(" OR ");
            }
            push_range(q, column, prefix);
        }
        q.push(")");
    }
    for attribute in &filter.attributes {
        q.push(" AND EXISTS (SELECT 1 FROM customer_attributes a WHERE a.customer_pk = c.id AND a.key = ")
            .bind(Param::Text(attribute.key.clone()));
        if let Some(value) = &attribute.value {
            q.push(" AND a.value = ").bind(Param::Text(value.clone()));
        }
        q.push(")");
    }
    if let Some(tag) = filter.tag_id {
        q.push(" AND EXISTS (SELECT 1 FROM customer_tags ct WHERE ct.customer_pk = c.id AND ct.tag_id = ")
            .bind(Param::Id(tag))
            .push(")");
    }
    if filter.token_type.is_some() || filter.token_value.is_some() {
        q.push(" AND EXISTS (SELECT 1 FROM customer_tokens t WHERE t.customer_pk = c.id AND t.deleted_at IS NULL");
        if let Some(kind) = &filter.token_type {
            q.push(" AND t.type = ").bind(Param::Text(kind.clone()));
        }
        if let Some(value) = &filter.token_value {
            q.push(" AND t.value = ").bind(Param::Text(value.clone()));
        }
        q.push(")");
    }
    if let Some(since) = filter.since {
        q.push(" AND c.updated_at >= ").bind(Param::Time(since));
    }
}

/// What `search` matches against (§4.3), each with its own index. First
/// names are matched through `full_name_lower`, which starts with them.
const SEARCH_COLUMNS: [&str; 5] =
    ["c.last_name_lower", "c.full_name_lower", "c.phone_number", "c.customer_id_lower", "c.email_lower"];

fn push_range(q: &mut SqlBuilder, column: &str, prefix: &Prefix) {
    q.push("(").push(column).push(" >= ").bind(Param::Text(prefix.low.clone()));
    if let Some(high) = &prefix.high {
        q.push(" AND ").push(column).push(" < ").bind(Param::Text(high.clone()));
    }
    q.push(")");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(query: &str) -> ListParams {
        let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes()).into_owned().collect();
        ListParams::parse(&pairs).unwrap()
    }

    fn account() -> AccountId {
        AccountId::parse("T00000001").unwrap()
    }

    #[test]
    fn placeholders_follow_the_dialect() {
        let p = params("email=ad&type=company");
        let pg = list_page(Dialect::Postgres, &account(), &p, None);
        assert!(pg.sql().contains("c.email_lower >= $3 AND c.email_lower < $4"), "{}", pg.sql());
        assert!(pg.sql().ends_with("LIMIT $5"));
        let lite = list_page(Dialect::Sqlite, &account(), &p, None);
        assert!(lite.sql().contains("c.email_lower >= ? AND c.email_lower < ?"));
        assert_eq!(pg.params(), lite.params());
        assert_eq!(pg.params()[4], Param::Int(11));
    }

    #[test]
    fn search_ors_every_search_column_as_ranges() {
        let q = list_page(Dialect::Sqlite, &account(), &params("search=An"), None);
        for column in SEARCH_COLUMNS {
            assert!(q.sql().contains(&format!("{column} >= ?")), "{column}");
        }
        assert!(q.params().contains(&Param::Text("an".into())));
        assert!(q.params().contains(&Param::Text("ao".into())));
    }

    #[test]
    fn default_listing_hides_deleted_and_contacts_and_pages_by_cursor() {
        let cursor = CursorPosition { created_at: Utc::now(), id: Uuid::nil() };
        let q = list_page(Dialect::Sqlite, &account(), &params(""), Some(&cursor));
        assert!(q.sql().contains("c.deleted_at IS NULL"));
        assert!(q.sql().contains("c.type <> ?"));
        assert!(q.sql().contains("c.created_at <= ? AND (c.created_at < ? OR c.id > ?)"));
        assert!(q.sql().contains("ORDER BY c.created_at DESC, c.id ASC"));
    }

    #[test]
    fn since_orders_by_update_time() {
        let q = list_page(
            Dialect::Sqlite,
            &account(),
            &params("since_datetime=2026-01-01T00:00:00Z&include_deleted=true&type=any"),
            None,
        );
        assert!(!q.sql().contains("deleted_at IS NULL"));
        assert!(!q.sql().contains("c.type"));
        assert!(q.sql().contains("c.updated_at >= ?"));
        assert!(q.sql().contains("ORDER BY c.updated_at ASC, c.id ASC"));
    }

    #[test]
    fn tag_and_token_filters_are_exists_subqueries() {
        let tag = Uuid::new_v4();
        let q = count(
            Dialect::Sqlite,
            &account(),
            &params(&format!("tag_id={tag}&token_type=card&token_value=123")).filter,
        );
        assert!(q.sql().contains("FROM customer_tags ct WHERE ct.customer_pk = c.id AND ct.tag_id = ?"));
        assert!(q.sql().contains("t.deleted_at IS NULL AND t.type = ? AND t.value = ?"));
        assert!(q.params().contains(&Param::Id(tag)));
    }

    #[test]
    fn attribute_filters_are_exists_subqueries() {
        let q = count(
            Dialect::Postgres,
            &account(),
            &params("attributes_keys=tier&attributes_values=gold&attributes_keys=vip").filter,
        );
        assert_eq!(q.sql().matches("EXISTS (SELECT 1 FROM customer_attributes").count(), 2);
        assert!(q.sql().contains("a.key = $3 AND a.value = $4"));
    }
}
