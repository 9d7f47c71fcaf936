//! The customer list (§4.3): the one place where a filter becomes a `WHERE`
//! clause and where the plan for a page is chosen, shared by both backends.
//! Prefixes become index ranges (`col >= lo AND col < hi`) rather than
//! `LIKE`, which keeps them on an index in SQLite and in PostgreSQL's
//! generic plans; how the strategies were chosen: `docs/performance.md`.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::domain::customer::CustomerType;
use crate::domain::ids::AccountId;
use crate::domain::listing::{CustomerFilter, ListParams, Prefix, TypeFilter};
use crate::domain::stored::StoredCustomer;

use super::cursors::CursorTimes;
use super::customers::customers_of;
use super::engine::Conn;
use super::sql::{self, text, Dialect, Param, SqlBuilder, CUSTOMER_COLUMNS};
use super::{CustomerPage, StoreError};

pub(super) async fn list_customers(
    conn: &mut impl Conn,
    account: &AccountId,
    params: &ListParams,
    cursors: &CursorTimes,
) -> Result<CustomerPage, StoreError> {
    // The change feed pages by `updated_at`, which changes: only the
    // `created_at` order's cursors are kept.
    let by_creation = params.filter.since.is_none();
    let cursor_at = params.starting_after.filter(|_| by_creation).and_then(|id| cursors.get(account, id));
    let mut strategy = Strategy::first(&params.filter);
    let mut customers = loop {
        let q = list_page(conn.dialect(), account, params, strategy, cursor_at);
        let rows = conn.fetch_stored(q).await?;
        match strategy {
            // Too few matches among the newest rows: sort the candidates
            // (inside their indexes for a lone prefix) unless there are so
            // many that they are dense enough for a walk down created_at.
            Strategy::Window(_) if rows.len() <= params.limit as usize => {
                let cap = Strategy::sort_cap(conn.dialect(), &params.filter);
                let candidates = match cap {
                    Some(cap) => {
                        let q = candidate_count(conn.dialect(), account, &params.filter, cap + 1);
                        Some(conn.fetch_i64(q).await?.unwrap_or(0))
                    }
                    None => None,
                };
                strategy = Strategy::after_window(conn.dialect(), &params.filter, candidates);
            }
            _ => break rows,
        }
    };
    if let (true, Some(id)) = (customers.is_empty(), params.starting_after) {
        check_cursor(conn, account, id).await?;
    }
    let has_more = customers.len() > params.limit as usize;
    customers.truncate(params.limit as usize);
    if let (true, true, Some(last)) = (has_more, by_creation, customers.last()) {
        cursors.remember(account, last.id, last.created_at);
    }
    let total = if params.total {
        let q = count(conn.dialect(), account, &params.filter);
        conn.fetch_i64(q).await?
    } else {
        None
    };
    let related = contacts_targets(conn, account, &customers).await?;
    Ok(CustomerPage { customers, related, has_more, total })
}

/// An empty page after a cursor: the end of the list, or a cursor that
/// names no customer of this account (400).
async fn check_cursor(conn: &mut impl Conn, account: &AccountId, id: Uuid) -> Result<(), StoreError> {
    // count(*): an integer of the same width in both backends.
    let mut q = SqlBuilder::new(conn.dialect(), "SELECT count(*) FROM customers c WHERE c.account_id = ");
    q.bind(text(account.as_str())).push(" AND c.id = ").bind(Param::Id(id));
    match conn.fetch_i64(q).await? {
        Some(1) => Ok(()),
        _ => Err(StoreError::invalid("starting_after", "invalid_cursor", "names no customer of this account")),
    }
}

/// The customers that contacts on this page are `contact_for`, each once and
/// not repeating a customer already on the page.
pub(super) async fn contacts_targets(
    conn: &mut impl Conn,
    account: &AccountId,
    page: &[StoredCustomer],
) -> Result<Vec<StoredCustomer>, StoreError> {
    let mut wanted: Vec<String> = Vec::new();
    for id in page.iter().flat_map(StoredCustomer::contact_ids) {
        if !wanted.contains(&id) && !page.iter().any(|c| c.customer_id == id) {
            wanted.push(id);
        }
    }
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let mut q = customers_of(conn.dialect(), account);
    q.push(" AND c.deleted_at IS NULL AND c.customer_id IN (");
    sql::push_list(&mut q, wanted.iter().map(|id| text(id)));
    q.push(") ORDER BY c.created_at DESC, c.id ASC");
    conn.fetch_stored(q).await
}

/// How a list query finds the matches of a prefix filter. Newest-first
/// with a prefix has two good plans and the planner cannot tell which one
/// applies: walking the `created_at` index and filtering is fast when matches
/// are dense and a full scan when they are rare; collecting the matches from
/// the prefix indexes and sorting them is the reverse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// No prefix filter (or a change feed): one plain query.
    Plain,
    /// Filter only the newest `n` rows after the cursor. Exact whenever it
    /// finds a full page: a newer match would lie inside the window.
    Window(i64),
    /// Take candidates from the prefix indexes, then order them.
    IndexRanges,
    /// Order every candidate by `created_at` inside the prefix indexes
    /// (which carry it) and read only the page's rows from the table. For a
    /// prefix with nothing else to check, whose matches the window missed:
    /// they are few, or they lie behind many newer non-matching rows, and
    /// this costs the number of candidates however far back they lie.
    NewestFromIndexes,
}

impl Strategy {
    /// The first plan to try for a filter.
    pub fn first(filter: &CustomerFilter) -> Self {
        if filter.since.is_none() && prefix_filter(filter).is_some() {
            Strategy::Window(WINDOW)
        } else {
            Strategy::Plain
        }
    }

    /// After the window found less than a page: the most candidates worth
    /// sorting, which the caller counts up to one more than that, or `None`
    /// when sorting them is always the better plan. On PostgreSQL ordering
    /// a lone prefix's candidates inside the indexes beat the fallback
    /// however many there were (35–117 against 8–51 searches/s behind
    /// 20,000 newer non-matching rows). SQLite really walks `created_at`
    /// (about 0.8 µs a row, against 2 µs an email candidate, whose unique
    /// index cannot carry `created_at`), so it keeps the cap. See
    /// `docs/performance.md`.
    pub fn sort_cap(dialect: Dialect, filter: &CustomerFilter) -> Option<i64> {
        match (is_other_filter_free(filter), dialect) {
            (true, Dialect::Postgres) => None,
            _ => Some(MAX_SORTED_CANDIDATES),
        }
    }

    /// The plan after the window, given the candidates counted up to one
    /// more than [`Strategy::sort_cap`] (`None` where it is `None`).
    pub fn after_window(dialect: Dialect, filter: &CustomerFilter, candidates: Option<i64>) -> Self {
        match (candidates, Strategy::sort_cap(dialect, filter)) {
            (Some(n), Some(cap)) if n > cap => Strategy::Plain,
            _ if is_other_filter_free(filter) => Strategy::NewestFromIndexes,
            _ => Strategy::IndexRanges,
        }
    }
}

/// The columns PostgreSQL's window plan copies (every prefix column).
const WINDOW_COLUMNS: [&str; 5] =
    ["c.email_lower", "c.phone_number", "c.last_name_lower", "c.full_name_lower", "c.customer_id_lower"];

/// Rows the window plan looks at before giving up on dense matches.
pub const WINDOW: i64 = 2000;

/// Most candidates the index plan sorts; with more, matches are dense
/// enough that walking `created_at` finds a page soon.
pub const MAX_SORTED_CANDIDATES: i64 = 5000;

/// How many candidates the driving prefix has, counted through its indexes
/// and stopping at `cap` (cheap however many there are).
pub fn candidate_count(dialect: Dialect, account: &AccountId, filter: &CustomerFilter, cap: i64) -> SqlBuilder {
    let mut q = SqlBuilder::new(dialect, "SELECT count(*) FROM (");
    push_candidate_ids(&mut q, account, filter, " UNION ALL ");
    q.push(" LIMIT ").bind(Param::Int(cap)).push(") capped");
    q
}

/// The filter whose index drives the `IndexRanges` plan: search, else
/// email, else phone number — with the columns it ranges over.
fn prefix_filter(filter: &CustomerFilter) -> Option<(&Prefix, &'static [&'static str])> {
    const EMAIL: &[&str] = &["email_lower"];
    const PHONE: &[&str] = &["phone_number"];
    if let Some(p) = &filter.search {
        Some((p, &SEARCH_COLUMNS))
    } else if let Some(p) = &filter.email {
        Some((p, EMAIL))
    } else {
        filter.phone_number.as_ref().map(|p| (p, PHONE))
    }
}

/// One page of matches: `limit + 1` rows so the caller can tell whether
/// another page exists. `cursor_at` is the cursor's `created_at` where the
/// store knows it ([`super::cursors`]); otherwise the statement looks it up.
pub fn list_page(
    dialect: Dialect,
    account: &AccountId,
    params: &ListParams,
    strategy: Strategy,
    cursor_at: Option<DateTime<Utc>>,
) -> SqlBuilder {
    let filter = &params.filter;
    let mut q = SqlBuilder::new(dialect, "SELECT ");
    q.push(CUSTOMER_COLUMNS);
    match strategy {
        Strategy::Window(window) if dialect == Dialect::Sqlite => {
            // SQLite: walk newest first with the filter, no further back than
            // the window's oldest row, so a page of dense matches stops the
            // walk early. The bound comes from the created_at index alone
            // (deleted customers and contacts count towards it, which keeps
            // it a newest-first prefix: still exact on a full page); search
            // 2.9× faster. PostgreSQL's generic plan for this shape scans
            // the prefix indexes instead (50× slower), so it keeps the form
            // below.
            q.push(" FROM customers c").push(newest_first_hint(dialect)).push(" WHERE ");
            push_scope(&mut q, account, filter);
            push_matches(&mut q, filter, false, "c");
            push_cursor(&mut q, account, params.starting_after, cursor_at);
            q.push(" AND c.created_at >= (SELECT min(w.created_at) FROM (SELECT c.created_at FROM customers c")
                .push(newest_first_hint(dialect))
                .push(" WHERE c.account_id = ")
                .bind(text(account.as_str()));
            push_cursor(&mut q, account, params.starting_after, cursor_at);
            q.push(" ORDER BY c.created_at DESC, c.id ASC LIMIT ").bind(Param::Int(window)).push(") w)");
        }
        Strategy::Window(window) => {
            // Only what the filter reads is copied for the window's rows;
            // the matches are joined back for their documents.
            q.push(" FROM (SELECT c.id, c.created_at, ").push(&WINDOW_COLUMNS.join(", "));
            q.push(" FROM customers c").push(newest_first_hint(dialect)).push(" WHERE ");
            push_scope(&mut q, account, filter);
            push_cursor(&mut q, account, params.starting_after, cursor_at);
            q.push(" ORDER BY c.created_at DESC, c.id ASC LIMIT ")
                .bind(Param::Int(window))
                .push(") w JOIN customers c ON c.id = w.id WHERE 1 = 1");
            push_matches(&mut q, filter, false, "w");
        }
        Strategy::IndexRanges => {
            push_candidates(&mut q, account, filter);
            q.push(" WHERE ");
            push_scope(&mut q, account, filter);
            push_matches(&mut q, filter, true, "c");
            push_cursor(&mut q, account, params.starting_after, cursor_at);
        }
        Strategy::NewestFromIndexes => push_newest_candidates(&mut q, account, params, cursor_at),
        Strategy::Plain => {
            // With a prefix, Plain is the dense fallback: walk created_at.
            let walk = filter.since.is_none() && prefix_filter(filter).is_some();
            q.push(" FROM customers c").push(if walk { newest_first_hint(dialect) } else { "" });
            let cursor = params.starting_after.filter(|_| filter.since.is_none());
            let joined = if cursor_at.is_none() { push_cursor_row(&mut q, account, cursor) } else { None };
            q.push(" WHERE ");
            push_scope(&mut q, account, filter);
            push_matches(&mut q, filter, false, "c");
            match joined {
                Some(id) => push_keyset(&mut q, id, |q| {
                    q.push("cur.t");
                }),
                None => push_cursor(&mut q, account, cursor, cursor_at),
            }
        }
    }
    if filter.since.is_some() {
        // The change feed: oldest change first (§4.3 since_datetime).
        q.push(" ORDER BY c.updated_at ASC, c.id ASC");
    } else {
        q.push(" ORDER BY c.created_at DESC, c.id ASC");
    }
    q.push(" LIMIT ").bind(Param::Int(i64::from(params.limit) + 1));
    q
}

/// Makes SQLite walk the `created_at` index. With STAT4 statistics its
/// planner judged a small account's rows few enough to read a covering
/// prefix index whole and sort it (30 ms a page for 10,000 customers,
/// against 3.8 ms walking newest first). PostgreSQL needs no hint.
fn newest_first_hint(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Sqlite => " INDEXED BY customers_created_idx",
        Dialect::Postgres => "",
    }
}

/// After the cursor customer (`starting_after`) in the default order. Its
/// `created_at` is bound when the store knows it (`cursor_at`), else read
/// inside the statement by a subquery that runs once (it saves a next page
/// a statement of its own); a cursor naming no
/// customer of the account matches nothing, which the caller tells apart
/// from the end of the list. Matches the (account_id, created_at, id DESC)
/// index read backwards; a row comparison would not, because the
/// directions are mixed.
fn push_cursor(q: &mut SqlBuilder, account: &AccountId, cursor: Option<Uuid>, cursor_at: Option<DateTime<Utc>>) {
    match (cursor, cursor_at) {
        (Some(id), Some(at)) => push_keyset(q, id, |q| {
            q.bind(Param::Time(at));
        }),
        (Some(id), None) => push_keyset(q, id, |q| {
            q.push("(SELECT k.created_at FROM customers k WHERE k.account_id = ")
                .bind(text(account.as_str()))
                .push(" AND k.id = ")
                .bind(Param::Id(id))
                .push(")");
        }),
        (None, _) => {}
    }
}

/// SQLite, a plain list after a cursor: joins the cursor's row once, as
/// `cur`, instead of looking its `created_at` up in two scalar subqueries
/// (about 8k of a next page's 190k instructions). SQLite keeps the
/// `created_at` index's order behind the one-row join; PostgreSQL would
/// sort every row after the cursor, so it keeps the subqueries. The cursor
/// it joined, whose `created_at` is then `cur.t`.
fn push_cursor_row(q: &mut SqlBuilder, account: &AccountId, cursor: Option<Uuid>) -> Option<Uuid> {
    let id = cursor.filter(|_| q.dialect() == Dialect::Sqlite)?;
    q.push(", (SELECT created_at AS t FROM customers WHERE account_id = ")
        .bind(text(account.as_str()))
        .push(" AND id = ")
        .bind(Param::Id(id))
        .push(") cur");
    Some(id)
}

/// The rows after the cursor in newest-first order, ties on `created_at`
/// broken by `id`; `cursor_time` writes the cursor's `created_at`.
fn push_keyset(q: &mut SqlBuilder, id: Uuid, mut cursor_time: impl FnMut(&mut SqlBuilder)) {
    q.push(" AND c.created_at <= ");
    cursor_time(q);
    q.push(" AND (c.created_at < ");
    cursor_time(q);
    q.push(" OR c.id > ").bind(Param::Id(id)).push(")");
}

/// ` FROM (row keys from the prefix indexes) m JOIN customers c ON c.key = m.k`.
fn push_candidates(q: &mut SqlBuilder, account: &AccountId, filter: &CustomerFilter) {
    if prefix_filter(filter).is_none() {
        q.push(" FROM customers c");
        return;
    }
    let key = row_key(q.dialect());
    q.push(" FROM (");
    push_candidate_ids(q, account, filter, " UNION ");
    q.push(") m JOIN customers c ON c.").push(key).push(" = m.k");
}

/// ` FROM (the newest candidates' keys) m JOIN customers c ON c.key = m.k`
/// for [`Strategy::NewestFromIndexes`]. Each range of the driving prefix is
/// read from its index alone (which carries the key, `created_at` and the
/// scope's type and deletion time; SQLite's email index excepted), and a
/// top-N sort keeps the newest. A customer is a candidate at most once per
/// column, so the newest (limit + 1) × columns entries hold the newest
/// limit + 1 customers; `DISTINCT` drops the repeats. Ties on `created_at`
/// are ordered by the row key here, which is exact because an account's
/// clock gives every customer its own `created_at`.
fn push_newest_candidates(
    q: &mut SqlBuilder,
    account: &AccountId,
    params: &ListParams,
    cursor_at: Option<DateTime<Utc>>,
) {
    let filter = &params.filter;
    let Some((prefix, columns)) = prefix_filter(filter) else {
        q.push(" FROM customers c");
        return;
    };
    let key = row_key(q.dialect());
    q.push(" FROM (SELECT DISTINCT k FROM (");
    let select = format!("c.{key} AS k, c.created_at AS t");
    push_scoped_ranges(q, account, filter, (prefix, columns), &select, " UNION ALL ", |q| {
        push_cursor(q, account, params.starting_after, cursor_at);
    });
    let keep = (i64::from(params.limit) + 1) * columns.len() as i64;
    q.push(" ORDER BY t DESC, k ASC LIMIT ").bind(Param::Int(keep));
    q.push(") n) m JOIN customers c ON c.").push(key).push(" = m.k");
}

/// The key a statement uses to name a row internally: SQLite's `rowid`, or
/// `id` in PostgreSQL. Every SQLite index holds the rowid, so a set of
/// candidates collected as rowids needs no table lookup (the email index,
/// which cannot hold `id`, stays covering), the set's temporary B-tree
/// compares integers instead of 16-byte blobs, and the join back reads the
/// table directly instead of through the `id` index. A rowid can change on
/// VACUUM, so it never leaves the statement.
fn row_key(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Sqlite => "rowid",
        Dialect::Postgres => "id",
    }
}

/// `SELECT key AS k … range <joiner> SELECT key AS k … range …` over the
/// driving prefix's columns; `UNION` removes duplicates, `UNION ALL` stops
/// early.
fn push_candidate_ids(q: &mut SqlBuilder, account: &AccountId, filter: &CustomerFilter, joiner: &str) {
    let Some((prefix, columns)) = prefix_filter(filter) else { return };
    let key = row_key(q.dialect());
    for (i, column) in columns.iter().enumerate() {
        if i > 0 {
            q.push(joiner);
        }
        q.push("SELECT ")
            .push(key)
            .push(" AS k FROM customers WHERE account_id = ")
            .bind(Param::Text(account.as_str().to_owned()))
            .push(" AND ");
        push_range(q, column, prefix);
    }
}

/// The number of all matches, ignoring paging. A prefix filter counts
/// through its indexes rather than scanning the account; when nothing but the
/// prefix and the scope applies, the prefix indexes (which carry id, type and
/// deletion time) answer alone, without reading the table.
pub fn count(dialect: Dialect, account: &AccountId, filter: &CustomerFilter) -> SqlBuilder {
    if let (true, Some((prefix, columns))) = (is_other_filter_free(filter), prefix_filter(filter)) {
        let mut q = SqlBuilder::new(dialect, "SELECT count(*) FROM (");
        let select = format!("c.{}", row_key(dialect));
        push_scoped_ranges(&mut q, account, filter, (prefix, columns), &select, " UNION ", |_| {});
        q.push(") m");
        return q;
    }
    let mut q = SqlBuilder::new(dialect, "SELECT count(*)");
    push_candidates(&mut q, account, filter);
    q.push(" WHERE ");
    push_scope(&mut q, account, filter);
    push_matches(&mut q, filter, true, "c");
    q
}

/// `SELECT select FROM customers c WHERE scope AND range <joiner> …`, one
/// branch per column of the driving prefix, each read from that column's
/// index; `extra` adds conditions to every branch.
fn push_scoped_ranges(
    q: &mut SqlBuilder,
    account: &AccountId,
    filter: &CustomerFilter,
    (prefix, columns): (&Prefix, &[&str]),
    select: &str,
    joiner: &str,
    mut extra: impl FnMut(&mut SqlBuilder),
) {
    for (i, column) in columns.iter().enumerate() {
        if i > 0 {
            q.push(joiner);
        }
        q.push("SELECT ").push(select).push(" FROM customers c WHERE ");
        push_scope(q, account, filter);
        q.push(" AND ");
        push_range(q, &format!("c.{column}"), prefix);
        extra(q);
    }
}

/// Whether the filter holds at most one prefix (search, email or phone)
/// and nothing beyond the plain scope: no change time, attributes, tag or
/// token conditions.
fn is_other_filter_free(filter: &CustomerFilter) -> bool {
    // Every field named, none skipped with `..`: a filter added later must
    // be placed here on one side or the other, or this stops compiling
    // (left out, a prefix search would ignore it and `total-count` be wrong).
    let CustomerFilter {
        email,
        phone_number,
        search,
        // The scope every strategy applies itself (`push_scope`).
        types: _,
        include_deleted: _,
        // Filters the prefix strategies cannot apply.
        since,
        attributes,
        tag_id,
        token_type,
        token_value,
    } = filter;
    let prefixes = [search, email, phone_number].iter().filter(|p| p.is_some()).count();
    prefixes <= 1
        && since.is_none()
        && attributes.is_empty()
        && tag_id.is_none()
        && token_type.is_none()
        && token_value.is_none()
}

/// The account and the cheap row conditions: deletion, type, change time.
fn push_scope(q: &mut SqlBuilder, account: &AccountId, filter: &CustomerFilter) {
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
    if let Some(since) = filter.since {
        q.push(" AND c.updated_at >= ").bind(Param::Time(since));
    }
}

/// The match conditions; prefix ranges read their columns from `alias`.
/// With `candidates_joined`, the driving prefix filter is already applied by
/// the candidate join and is skipped here.
fn push_matches(q: &mut SqlBuilder, filter: &CustomerFilter, candidates_joined: bool, alias: &str) {
    let driving = if candidates_joined { prefix_filter(filter).map(|(p, _)| p as *const Prefix) } else { None };
    let applies = |p: &Prefix| driving != Some(p as *const Prefix);
    // Every field named (no `..`): a new filter must be applied here or in
    // `push_scope`, or this stops compiling.
    let CustomerFilter {
        email,
        phone_number,
        search,
        attributes,
        tag_id,
        token_type,
        token_value,
        // Applied by `push_scope`.
        types: _,
        include_deleted: _,
        since: _,
    } = filter;
    if let Some(prefix) = email.as_ref().filter(|p| applies(p)) {
        q.push(" AND ");
        push_range(q, &format!("{alias}.email_lower"), prefix);
    }
    if let Some(prefix) = phone_number.as_ref().filter(|p| applies(p)) {
        q.push(" AND ");
        push_range(q, &format!("{alias}.phone_number"), prefix);
    }
    if let Some(prefix) = search.as_ref().filter(|p| applies(p)) {
        q.push(" AND (");
        for (i, column) in SEARCH_COLUMNS.iter().enumerate() {
            if i > 0 {
                q.push(" OR ");
            }
            push_range(q, &format!("{alias}.{column}"), prefix);
        }
        q.push(")");
    }
    for attribute in attributes {
        q.push(" AND EXISTS (SELECT 1 FROM customer_attributes a WHERE a.customer_pk = c.id AND a.key = ")
            .bind(Param::Text(attribute.key.clone()));
        if let Some(value) = &attribute.value {
            q.push(" AND a.value = ").bind(Param::Text(value.clone()));
        }
        q.push(")");
    }
    if let Some(tag) = *tag_id {
        q.push(" AND EXISTS (SELECT 1 FROM customer_tags ct WHERE ct.customer_pk = c.id AND ct.tag_id = ")
            .bind(Param::Id(tag))
            .push(")");
    }
    if token_type.is_some() || token_value.is_some() {
        q.push(" AND EXISTS (SELECT 1 FROM customer_tokens t WHERE t.customer_pk = c.id AND t.deleted_at IS NULL");
        if let Some(kind) = token_type {
            q.push(" AND t.type = ").bind(Param::Text(kind.clone()));
        }
        if let Some(value) = token_value {
            q.push(" AND t.value = ").bind(Param::Text(value.clone()));
        }
        q.push(")");
    }
}

/// What `search` matches against (§4.3), each with its own index. First
/// names are matched through `full_name_lower`, which starts with them.
const SEARCH_COLUMNS: [&str; 5] =
    ["last_name_lower", "full_name_lower", "phone_number", "customer_id_lower", "email_lower"];

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
        let pg = list_page(Dialect::Postgres, &account(), &p, Strategy::Plain, None);
        assert!(pg.sql().contains("c.email_lower >= $3 AND c.email_lower < $4"), "{}", pg.sql());
        assert!(pg.sql().ends_with("LIMIT $5"));
        let lite = list_page(Dialect::Sqlite, &account(), &p, Strategy::Plain, None);
        assert!(lite.sql().contains("c.email_lower >= ? AND c.email_lower < ?"));
        assert_eq!(pg.params(), lite.params());
        assert_eq!(pg.params()[4], Param::Int(11));
    }

    #[test]
    fn search_ors_every_search_column_as_ranges() {
        let q = list_page(Dialect::Sqlite, &account(), &params("search=An"), Strategy::Plain, None);
        for column in SEARCH_COLUMNS {
            assert!(q.sql().contains(&format!("{column} >= ?")), "{column}");
        }
        assert!(q.params().contains(&Param::Text("an".into())));
        assert!(q.params().contains(&Param::Text("ao".into())));
    }

    #[test]
    fn default_listing_hides_deleted_and_contacts_and_pages_by_cursor() {
        let cursor = "01a20991-ec60-71ca-9acf-eb3795830f0c";
        let after = params(&format!("starting_after={cursor}"));
        let q = list_page(Dialect::Sqlite, &account(), &after, Strategy::Plain, None);
        assert!(q.sql().contains("c.deleted_at IS NULL"));
        assert!(q.sql().contains("c.type <> ?"));
        assert!(
            q.sql().starts_with(&format!(
                "SELECT {CUSTOMER_COLUMNS} FROM customers c, \
                 (SELECT created_at AS t FROM customers WHERE account_id = ? AND id = ?) cur WHERE c.account_id = ?"
            )),
            "SQLite joins the cursor's row once: {}",
            q.sql()
        );
        assert!(q.sql().contains("AND c.created_at <= cur.t AND (c.created_at < cur.t OR c.id > ?)"), "{}", q.sql());
        assert!(q.sql().ends_with("ORDER BY c.created_at DESC, c.id ASC LIMIT ?"), "{}", q.sql());
        assert_eq!(q.params()[..2], [text("T00000001"), Param::Id(cursor.parse().unwrap())]);

        let pg = list_page(Dialect::Postgres, &account(), &after, Strategy::Plain, None);
        let cursor_time =
            |a, b| format!("(SELECT k.created_at FROM customers k WHERE k.account_id = ${a} AND k.id = ${b})");
        let (first, second) = (cursor_time(3, 4), cursor_time(5, 6));
        assert!(
            pg.sql().contains(&format!("c.created_at <= {first} AND (c.created_at < {second} OR c.id > $7)")),
            "PostgreSQL keeps the subqueries: {}",
            pg.sql()
        );
        assert!(!pg.sql().contains("cur"), "{}", pg.sql());
    }

    #[test]
    fn a_cursor_whose_time_is_known_is_bound_not_looked_up() {
        let cursor: Uuid = "01a20991-ec60-71ca-9acf-eb3795830f0c".parse().unwrap();
        let at = DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap();
        let after = params(&format!("starting_after={cursor}"));
        for dialect in [Dialect::Sqlite, Dialect::Postgres] {
            for strategy in [Strategy::Plain, Strategy::Window(2000), Strategy::IndexRanges] {
                let q = list_page(dialect, &account(), &after, strategy, Some(at));
                assert!(!q.sql().contains("cur") && !q.sql().contains(" k "), "{}", q.sql());
                assert!(q.params().contains(&Param::Time(at)), "{:?}: {}", strategy, q.sql());
                assert!(q.params().contains(&Param::Id(cursor)), "{}", q.sql());
            }
        }
        let sqlite = list_page(Dialect::Sqlite, &account(), &after, Strategy::Plain, Some(at));
        assert!(sqlite.sql().contains("AND c.created_at <= ? AND (c.created_at < ? OR c.id > ?)"), "{}", sqlite.sql());
    }

    #[test]
    fn since_orders_by_update_time() {
        let q = list_page(
            Dialect::Sqlite,
            &account(),
            &params("since_datetime=2026-01-01T00:00:00Z&include_deleted=true&type=any"),
            Strategy::Plain,
            None,
        );
        assert!(!q.sql().contains("deleted_at IS NULL"));
        assert!(!q.sql().contains("c.type"));
        assert!(q.sql().contains("c.updated_at >= ?"));
        assert!(q.sql().contains("ORDER BY c.updated_at ASC, c.id ASC"));
    }

    #[test]
    fn prefix_filters_start_with_the_window_then_use_their_indexes() {
        let p = params("search=an&email=an&type=any");
        assert_eq!(Strategy::first(&p.filter), Strategy::Window(WINDOW));
        assert_eq!(Strategy::first(&params("").filter), Strategy::Plain);
        assert_eq!(Strategy::first(&params("search=an&since_datetime=2026-01-01T00:00:00Z").filter), Strategy::Plain);

        let window = list_page(Dialect::Sqlite, &account(), &p, Strategy::Window(2000), None);
        assert!(window.sql().contains("FROM customers c INDEXED BY customers_created_idx WHERE"), "{}", window.sql());
        let dense = list_page(Dialect::Sqlite, &account(), &p, Strategy::Plain, None);
        assert!(dense.sql().contains("INDEXED BY customers_created_idx"), "{}", dense.sql());
        let feed = list_page(
            Dialect::Sqlite,
            &account(),
            &params("since_datetime=2026-01-01T00:00:00Z"),
            Strategy::Plain,
            None,
        );
        assert!(!feed.sql().contains("INDEXED BY"), "the change feed walks updated_at: {}", feed.sql());
        let pg = list_page(Dialect::Postgres, &account(), &p, Strategy::Window(2000), None);
        assert!(!pg.sql().contains("INDEXED BY"), "{}", pg.sql());
        assert!(pg.sql().contains("FROM (SELECT c.id, c.created_at, c.email_lower,"), "{}", pg.sql());
        assert!(pg.sql().contains(") w JOIN customers c ON c.id = w.id"), "{}", pg.sql());
        assert!(window.sql().contains("AND c.created_at >= (SELECT min(w.created_at) FROM (SELECT c.created_at"));
        assert!(window.sql().contains("ORDER BY c.created_at DESC, c.id ASC LIMIT ?) w)"), "{}", window.sql());
        assert!(window.sql().contains("AND (c.email_lower >= ?"), "{}", window.sql());
        assert!(window.params().contains(&Param::Int(2000)));

        let ranges = list_page(Dialect::Postgres, &account(), &p, Strategy::IndexRanges, None);
        let sql = ranges.sql();
        assert!(
            sql.contains("FROM (SELECT id AS k FROM customers WHERE account_id = $1 AND (last_name_lower >= $2"),
            "{sql}"
        );
        assert_eq!(sql.matches(" UNION ").count(), 4, "one range per search column");
        assert!(sql.contains(") m JOIN customers c ON c.id = m.k WHERE c.account_id = "));
        assert!(sql.contains("AND (c.email_lower >= "), "the other prefix still filters: {sql}");
        assert!(!sql.contains("OR (c.last_name_lower"), "the driving prefix is not repeated");
        let sqlite = list_page(Dialect::Sqlite, &account(), &p, Strategy::IndexRanges, None);
        assert!(
            sqlite.sql().contains("FROM (SELECT rowid AS k FROM customers WHERE account_id = ?"),
            "{}",
            sqlite.sql()
        );
        assert!(sqlite.sql().contains(") m JOIN customers c ON c.rowid = m.k WHERE"), "{}", sqlite.sql());
    }

    #[test]
    fn a_lone_prefix_missed_by_the_window_is_ordered_inside_its_indexes() {
        use Dialect::{Postgres, Sqlite};
        let lone = params("search=an").filter;
        assert_eq!(Strategy::sort_cap(Postgres, &lone), None, "PostgreSQL always sorts a lone prefix's candidates");
        assert_eq!(Strategy::after_window(Postgres, &lone, None), Strategy::NewestFromIndexes);
        let scoped = params("email=an&type=any&include_deleted=true").filter;
        assert_eq!(Strategy::sort_cap(Postgres, &scoped), None, "type and deletion are read from the indexes");
        assert_eq!(Strategy::sort_cap(Sqlite, &lone), Some(MAX_SORTED_CANDIDATES));
        assert_eq!(Strategy::after_window(Sqlite, &lone, Some(MAX_SORTED_CANDIDATES)), Strategy::NewestFromIndexes);
        assert_eq!(Strategy::after_window(Sqlite, &lone, Some(MAX_SORTED_CANDIDATES + 1)), Strategy::Plain);
        for other in ["search=an&email=an", "search=an&attributes_keys=k", &format!("search=an&tag_id={}", Uuid::nil())]
        {
            let filter = params(other).filter;
            for dialect in [Postgres, Sqlite] {
                assert_eq!(Strategy::sort_cap(dialect, &filter), Some(MAX_SORTED_CANDIDATES), "{other}");
                let few = Strategy::after_window(dialect, &filter, Some(MAX_SORTED_CANDIDATES));
                assert_eq!(few, Strategy::IndexRanges, "{other}: few candidates are read and sorted");
                let many = Strategy::after_window(dialect, &filter, Some(MAX_SORTED_CANDIDATES + 1));
                assert_eq!(many, Strategy::Plain, "{other}: many are walked");
            }
        }

        let cursor = Uuid::new_v4();
        let p = params(&format!("search=an&limit=3&starting_after={cursor}"));
        let pg = list_page(Dialect::Postgres, &account(), &p, Strategy::NewestFromIndexes, None);
        let sql = pg.sql();
        assert!(sql.contains(" FROM (SELECT DISTINCT k FROM (SELECT c.id AS k, c.created_at AS t FROM customers c WHERE c.account_id = $1 AND c.deleted_at IS NULL AND c.type <> $2 AND (c.last_name_lower >= $3"), "{sql}");
        assert_eq!(sql.matches(" UNION ALL SELECT c.id AS k, c.created_at AS t FROM customers c WHERE ").count(), 4);
        assert_eq!(
            sql.matches("AND c.created_at <= (SELECT k.created_at FROM customers k").count(),
            5,
            "each range starts after the cursor: {sql}"
        );
        assert!(sql.contains(" ORDER BY t DESC, k ASC LIMIT "), "{sql}");
        assert!(
            sql.ends_with(") n) m JOIN customers c ON c.id = m.k ORDER BY c.created_at DESC, c.id ASC LIMIT $47"),
            "{sql}"
        );
        assert!(pg.params().contains(&Param::Int(20)), "(limit + 1) × 5 columns: a customer can match in every column");
        assert!(pg.params().ends_with(&[Param::Int(20), Param::Int(4)]));

        let at = Utc::now();
        let sqlite = list_page(Dialect::Sqlite, &account(), &params("email=an"), Strategy::NewestFromIndexes, Some(at));
        let sql = sqlite.sql();
        assert!(sql.starts_with(&format!("SELECT {CUSTOMER_COLUMNS} FROM (SELECT DISTINCT k FROM (SELECT c.rowid AS k, c.created_at AS t FROM customers c WHERE c.account_id = ?")), "{sql}");
        assert!(!sql.contains("UNION") && !sql.contains("INDEXED BY"), "{sql}");
        assert!(sql.contains(") n) m JOIN customers c ON c.rowid = m.k ORDER BY"), "{sql}");
    }

    #[test]
    fn candidate_counts_stop_at_the_cap() {
        let q = candidate_count(Dialect::Postgres, &account(), &params("search=an").filter, 5001);
        assert!(
            q.sql().starts_with("SELECT count(*) FROM (SELECT id AS k FROM customers WHERE account_id = $1"),
            "{}",
            q.sql()
        );
        assert_eq!(q.sql().matches(" UNION ALL ").count(), 4);
        assert!(q.sql().ends_with(" LIMIT $16) capped"), "{}", q.sql());
    }

    #[test]
    fn counts_of_prefix_matches_go_through_the_indexes() {
        let q = count(Dialect::Sqlite, &account(), &params("email=ad").filter);
        assert_eq!(
            q.sql(),
            "SELECT count(*) FROM (SELECT c.rowid FROM customers c WHERE c.account_id = ? AND c.deleted_at IS NULL \
             AND c.type <> ? AND (c.email_lower >= ? AND c.email_lower < ?)) m",
            "a lone prefix is counted from its index alone"
        );
        let search = count(Dialect::Postgres, &account(), &params("search=ad&include_deleted=true").filter);
        assert_eq!(search.sql().matches(" UNION SELECT c.id FROM customers c WHERE c.account_id = ").count(), 4);
        assert!(!search.sql().contains("JOIN") && !search.sql().contains("deleted_at IS NULL"), "{}", search.sql());
        let with_since =
            count(Dialect::Sqlite, &account(), &params("email=ad&since_datetime=2020-01-01T00:00:00Z").filter);
        assert!(with_since.sql().contains(") m JOIN customers c ON c.rowid = m.k"), "{}", with_since.sql());
        let plain = count(Dialect::Sqlite, &account(), &params("type=company").filter);
        assert!(plain.sql().starts_with("SELECT count(*) FROM customers c WHERE c.account_id = ?"), "{}", plain.sql());
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
