//! The flows of the account's other records — settings (§8), terms (§8),
//! tags (§5), customer tokens (§6) and token events (§7) — written once over
//! [`Conn`] like the customer flows.

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use uuid::Uuid;

use crate::domain::customer::{Customer, JsonObject};
use crate::domain::ids::AccountId;
use crate::domain::listing::PageParams;
use crate::domain::records::{
    token_key, token_status, ClearTokenEvents, EventInput, Tag, TagInput, Terms, Token, TokenDetail, TokenEvent,
    TokenEventRequest, TokenEvents, TokenInput, TokenRef,
};
use crate::domain::settings::Settings;

use super::customers::{live_for_update, load_settings, select_by_customer_id};
use super::engine::Conn;
use super::query::{self, opt_text, text, Param, SqlBuilder, CUSTOMER_COLUMNS};
use super::rows::{db_row, Ts};
use super::{new_id, now_micros, CustomerRef, EventListParams, Page, StoreError};

fn json_param(value: &Option<JsonObject>) -> Result<Param, StoreError> {
    Ok(value.as_ref().map(Param::json).transpose()?.unwrap_or(Param::NullJson))
}

/// Splits `limit + 1` fetched rows into a page.
fn page<T>(mut items: Vec<T>, limit: u32, total: Option<i64>) -> Page<T> {
    let has_more = items.len() > limit as usize;
    items.truncate(limit as usize);
    Page { items, has_more, total }
}

// ---- settings ----------------------------------------------------------

/// Replaces the settings. Changing `allow_duplicates` re-derives the phone
/// uniqueness column of every live customer in the same transaction, so the
/// database keeps enforcing what the settings say.
pub(super) async fn put_settings(
    conn: &mut impl Conn,
    account: &AccountId,
    settings: Settings,
    actor: &str,
) -> Result<Settings, StoreError> {
    let before = load_settings(conn, account).await?;
    let doc = Param::json(&settings)?;
    let mut q = SqlBuilder::new(
        conn.dialect(),
        "INSERT INTO account_settings (account_id, doc, updated_at, updated_by) VALUES (",
    );
    query::push_list(&mut q, [text(account.as_str()), doc, Param::Time(now_micros()), text(actor)]);
    q.push(
        ") ON CONFLICT (account_id) DO UPDATE SET doc = excluded.doc, updated_at = excluded.updated_at, \
         updated_by = excluded.updated_by",
    );
    conn.execute(q).await?;

    let allow = settings.users.phone_number_validation.allow_duplicates;
    if allow != before.users.phone_number_validation.allow_duplicates {
        let value = if allow { "NULL" } else { "phone_number" };
        let mut q = SqlBuilder::new(conn.dialect(), "UPDATE customers SET phone_unique = ");
        q.push(value).push(" WHERE account_id = ").bind(text(account.as_str())).push(" AND deleted_at IS NULL");
        match conn.execute(q).await {
            Err(StoreError::Conflict { .. }) => {
                return Err(StoreError::invalid(
                    "users.phone_number_validation.allow_duplicates",
                    "duplicates_exist",
                    "customers share phone numbers; make them unique first",
                ))
            }
            other => other?,
        };
    }
    Ok(settings)
}

pub(super) async fn customer_exists(
    conn: &mut impl Conn,
    account: &AccountId,
    email: Option<&str>,
    phone_number: Option<&str>,
) -> Result<bool, StoreError> {
    let mut q = SqlBuilder::new(conn.dialect(), "SELECT count(*) FROM customers WHERE account_id = ");
    q.bind(text(account.as_str())).push(" AND deleted_at IS NULL");
    if let Some(email) = email {
        q.push(" AND email_lower = ").bind(text(&email.to_lowercase()));
    }
    if let Some(phone) = phone_number {
        q.push(" AND phone_number = ").bind(text(phone));
    }
    Ok(conn.fetch_i64(q).await?.unwrap_or(0) > 0)
}

// ---- terms ---------------------------------------------------------------

db_row! {
    struct TermsRow {
        id: Uuid,
        terms: String,
        created_at: Ts,
        created_by: String,
        deleted_at: Option<Ts>,
        deleted_by: Option<String>,
    }
}

impl From<TermsRow> for Terms {
    fn from(r: TermsRow) -> Self {
        Terms {
            id: r.id,
            terms: r.terms,
            created_at: r.created_at.0,
            created_by: r.created_by,
            deleted_at: r.deleted_at.map(|t| t.0),
            deleted_by: r.deleted_by,
        }
    }
}

const TERMS_COLUMNS: &str = "id, terms, created_at, created_by, deleted_at, deleted_by";

pub(super) async fn create_terms(
    conn: &mut impl Conn,
    account: &AccountId,
    terms: &str,
    actor: &str,
) -> Result<Terms, StoreError> {
    let created = Terms {
        id: new_id(),
        terms: terms.to_owned(),
        created_at: now_micros(),
        created_by: actor.to_owned(),
        deleted_at: None,
        deleted_by: None,
    };
    let mut q =
        SqlBuilder::new(conn.dialect(), "INSERT INTO terms (id, account_id, terms, created_at, created_by) VALUES (");
    query::push_list(
        &mut q,
        [Param::Id(created.id), text(account.as_str()), text(terms), Param::Time(created.created_at), text(actor)],
    );
    q.push(")");
    conn.execute(q).await?;
    Ok(created)
}

pub(super) async fn get_terms(
    conn: &mut impl Conn,
    account: &AccountId,
    id: Uuid,
) -> Result<Option<Terms>, StoreError> {
    let mut q = SqlBuilder::new(conn.dialect(), "SELECT ");
    q.push(TERMS_COLUMNS)
        .push(" FROM terms WHERE account_id = ")
        .bind(text(account.as_str()))
        .push(" AND id = ")
        .bind(Param::Id(id));
    let rows: Vec<TermsRow> = conn.fetch_all(q).await?;
    Ok(rows.into_iter().next().map(Into::into))
}

pub(super) async fn list_terms(
    conn: &mut impl Conn,
    account: &AccountId,
    params: &PageParams,
) -> Result<Page<Terms>, StoreError> {
    let cursor = match &params.starting_after {
        None => None,
        Some(raw) => {
            let found = match Uuid::parse_str(raw) {
                Ok(id) => get_terms(conn, account, id).await?,
                Err(_) => None,
            };
            Some(found.ok_or_else(|| {
                StoreError::invalid("starting_after", "invalid_cursor", "names no terms of this account")
            })?)
        }
    };
    let filter = |q: &mut SqlBuilder| {
        q.push(" FROM terms WHERE account_id = ").bind(text(account.as_str()));
        if !params.include_deleted {
            q.push(" AND deleted_at IS NULL");
        }
    };
    let mut q = SqlBuilder::new(conn.dialect(), "SELECT ");
    q.push(TERMS_COLUMNS);
    filter(&mut q);
    if let Some(after) = &cursor {
        push_desc_cursor(&mut q, "created_at", after.created_at, "id", Param::Id(after.id));
    }
    q.push(" ORDER BY created_at DESC, id ASC LIMIT ").bind(Param::Int(i64::from(params.limit) + 1));
    let rows: Vec<TermsRow> = conn.fetch_all(q).await?;
    let total = if params.total {
        let mut q = SqlBuilder::new(conn.dialect(), "SELECT count(*)");
        filter(&mut q);
        conn.fetch_i64(q).await?
    } else {
        None
    };
    Ok(page(rows.into_iter().map(Into::into).collect(), params.limit, total))
}

/// The keyset step of a newest-first list: rows after (`at`, `key`).
fn push_desc_cursor(q: &mut SqlBuilder, time_column: &str, at: DateTime<Utc>, key_column: &str, key: Param) {
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

pub(super) async fn delete_terms(
    conn: &mut impl Conn,
    account: &AccountId,
    id: Uuid,
    actor: &str,
) -> Result<Terms, StoreError> {
    let at = now_micros();
    let mut q = SqlBuilder::new(conn.dialect(), "UPDATE terms SET ");
    query::push_assignments(&mut q, [("deleted_at", Param::Time(at)), ("deleted_by", text(actor))]);
    q.push(" WHERE account_id = ")
        .bind(text(account.as_str()))
        .push(" AND id = ")
        .bind(Param::Id(id))
        .push(" AND deleted_at IS NULL");
    if conn.execute(q).await? == 0 {
        return Err(StoreError::NotFound);
    }
    get_terms(conn, account, id).await?.ok_or(StoreError::NotFound)
}

// ---- tags ----------------------------------------------------------------

db_row! {
    struct TagRow {
        id: Uuid,
        tag: String,
        metadata: Option<Json<JsonObject>>,
        created_at: Ts,
        created_by: String,
    }
}

impl From<TagRow> for Tag {
    fn from(r: TagRow) -> Self {
        Tag {
            id: r.id,
            tag: r.tag,
            metadata: r.metadata.map(|m| m.0),
            created_at: r.created_at.0,
            created_by: r.created_by,
        }
    }
}

const TAG_COLUMNS: &str = "t.id, t.tag, t.metadata, t.created_at, t.created_by";

pub(super) async fn create_tag(
    conn: &mut impl Conn,
    account: &AccountId,
    input: TagInput,
    actor: &str,
) -> Result<Tag, StoreError> {
    let tag = Tag {
        id: new_id(),
        tag: input.tag,
        metadata: input.metadata,
        created_at: now_micros(),
        created_by: actor.to_owned(),
    };
    let mut q = SqlBuilder::new(
        conn.dialect(),
        "INSERT INTO tags (id, account_id, tag, metadata, created_at, created_by) VALUES (",
    );
    query::push_list(
        &mut q,
        [
            Param::Id(tag.id),
            text(account.as_str()),
            text(&tag.tag),
            json_param(&tag.metadata)?,
            Param::Time(tag.created_at),
            text(actor),
        ],
    );
    q.push(")");
    conn.execute(q).await?;
    Ok(tag)
}

pub(super) async fn list_tags(conn: &mut impl Conn, account: &AccountId) -> Result<Vec<Tag>, StoreError> {
    let mut q = SqlBuilder::new(conn.dialect(), "SELECT ");
    q.push(TAG_COLUMNS)
        .push(" FROM tags t WHERE t.account_id = ")
        .bind(text(account.as_str()))
        .push(" ORDER BY t.tag ASC, t.id ASC");
    let rows: Vec<TagRow> = conn.fetch_all(q).await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

pub(super) async fn delete_tag(conn: &mut impl Conn, account: &AccountId, id: Uuid) -> Result<Tag, StoreError> {
    let mut q = SqlBuilder::new(conn.dialect(), "SELECT ");
    q.push(TAG_COLUMNS)
        .push(" FROM tags t WHERE t.account_id = ")
        .bind(text(account.as_str()))
        .push(" AND t.id = ")
        .bind(Param::Id(id));
    let rows: Vec<TagRow> = conn.fetch_all(q).await?;
    let tag: Tag = rows.into_iter().next().ok_or(StoreError::NotFound)?.into();
    let mut q = SqlBuilder::new(conn.dialect(), "DELETE FROM customer_tags WHERE tag_id = ");
    q.bind(Param::Id(id));
    conn.execute(q).await?;
    let mut q = SqlBuilder::new(conn.dialect(), "DELETE FROM tags WHERE id = ");
    q.bind(Param::Id(id));
    conn.execute(q).await?;
    Ok(tag)
}

pub(super) async fn customer_tags(
    conn: &mut impl Conn,
    account: &AccountId,
    customer_pk: Uuid,
) -> Result<Vec<Tag>, StoreError> {
    let mut q = SqlBuilder::new(conn.dialect(), "SELECT ");
    q.push(TAG_COLUMNS)
        .push(" FROM tags t JOIN customer_tags ct ON ct.tag_id = t.id WHERE t.account_id = ")
        .bind(text(account.as_str()))
        .push(" AND ct.customer_pk = ")
        .bind(Param::Id(customer_pk))
        .push(" ORDER BY t.tag ASC, t.id ASC");
    let rows: Vec<TagRow> = conn.fetch_all(q).await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

/// A live (not deleted) customer, or `NotFound`.
pub(super) async fn live_customer(
    conn: &mut impl Conn,
    account: &AccountId,
    customer: CustomerRef<'_>,
) -> Result<Customer, StoreError> {
    match select_by_customer_id(conn, account, customer.customer_id, false).await? {
        Some(c) if !c.is_deleted() && customer.admits(&c) => Ok(c),
        _ => Err(StoreError::NotFound),
    }
}

pub(super) async fn set_customer_tags(
    conn: &mut impl Conn,
    account: &AccountId,
    customer: CustomerRef<'_>,
    tags: &[Uuid],
) -> Result<Vec<Tag>, StoreError> {
    let customer = live_for_update(conn, account, customer).await?;
    let mut wanted: Vec<Uuid> = Vec::new();
    for id in tags {
        if !wanted.contains(id) {
            wanted.push(*id);
        }
    }
    if !wanted.is_empty() {
        let mut q = SqlBuilder::new(conn.dialect(), "SELECT count(*) FROM tags WHERE account_id = ");
        q.bind(text(account.as_str())).push(" AND id IN (");
        query::push_list(&mut q, wanted.iter().map(|id| Param::Id(*id)));
        q.push(")");
        if conn.fetch_i64(q).await?.unwrap_or(0) != wanted.len() as i64 {
            return Err(StoreError::invalid("tags", "not_found", "names a tag this account does not have"));
        }
    }
    let mut q = SqlBuilder::new(conn.dialect(), "DELETE FROM customer_tags WHERE customer_pk = ");
    q.bind(Param::Id(customer.id));
    conn.execute(q).await?;
    for id in &wanted {
        let mut q = SqlBuilder::new(conn.dialect(), "INSERT INTO customer_tags (customer_pk, tag_id) VALUES (");
        query::push_list(&mut q, [Param::Id(customer.id), Param::Id(*id)]);
        q.push(")");
        conn.execute(q).await?;
    }
    customer_tags(conn, account, customer.id).await
}

// ---- tokens --------------------------------------------------------------

db_row! {
    struct TokenRow {
        pk: Uuid,
        token_id: String,
        customer_pk: Uuid,
        r#type: String,
        value: String,
        metadata: Option<Json<JsonObject>>,
        source: Option<String>,
        created_at: Ts,
        created_by: String,
        deleted_at: Option<Ts>,
        deleted_by: Option<String>,
    }
}

impl From<TokenRow> for Token {
    fn from(r: TokenRow) -> Self {
        Token {
            id: r.pk,
            token_id: r.token_id,
            kind: r.r#type,
            value: r.value,
            metadata: r.metadata.map(|m| m.0),
            source: r.source,
            created_at: r.created_at.0,
            created_by: r.created_by,
            deleted_at: r.deleted_at.map(|t| t.0),
            deleted_by: r.deleted_by,
        }
    }
}

const TOKEN_COLUMNS: &str =
    "pk, token_id, customer_pk, type, value, metadata, source, created_at, created_by, deleted_at, deleted_by";

async fn select_tokens(conn: &mut impl Conn, q: SqlBuilder) -> Result<Vec<TokenRow>, StoreError> {
    conn.fetch_all(q).await
}

pub(super) async fn add_token(
    conn: &mut impl Conn,
    account: &AccountId,
    customer: CustomerRef<'_>,
    input: TokenInput,
    delete_events: bool,
    actor: &str,
) -> Result<Token, StoreError> {
    let customer = live_for_update(conn, account, customer).await?;
    let token = Token {
        id: new_id(),
        token_id: input.token_id.unwrap_or_else(|| Uuid::new_v4().to_string()),
        kind: input.kind,
        value: input.value,
        metadata: input.metadata,
        source: None,
        created_at: now_micros(),
        created_by: actor.to_owned(),
        deleted_at: None,
        deleted_by: None,
    };
    let mut q = SqlBuilder::new(
        conn.dialect(),
        "INSERT INTO customer_tokens (pk, account_id, token_id, customer_pk, type, value, metadata, created_at, \
         created_by) VALUES (",
    );
    query::push_list(
        &mut q,
        [
            Param::Id(token.id),
            text(account.as_str()),
            text(&token.token_id),
            Param::Id(customer.id),
            text(&token.kind),
            text(&token.value),
            json_param(&token.metadata)?,
            Param::Time(token.created_at),
            text(actor),
        ],
    );
    q.push(")");
    conn.execute(q).await?;
    if delete_events {
        let reference = TokenRef { kind: token.kind.clone(), value: token.value.clone() };
        clear_events(conn, account, &reference, token.created_at, actor).await?;
    }
    Ok(token)
}

pub(super) async fn list_tokens(
    conn: &mut impl Conn,
    account: &AccountId,
    customer: CustomerRef<'_>,
    params: &PageParams,
) -> Result<Page<Token>, StoreError> {
    let customer = live_customer(conn, account, customer).await?;
    let cursor = match &params.starting_after {
        None => None,
        Some(token_id) => {
            let mut q = SqlBuilder::new(conn.dialect(), "SELECT ");
            q.push(TOKEN_COLUMNS)
                .push(" FROM customer_tokens WHERE customer_pk = ")
                .bind(Param::Id(customer.id))
                .push(" AND token_id = ")
                .bind(text(token_id));
            let found = select_tokens(conn, q).await?.into_iter().next();
            Some(found.ok_or_else(|| {
                StoreError::invalid("starting_after", "invalid_cursor", "names no token of this customer")
            })?)
        }
    };
    let filter = |q: &mut SqlBuilder| {
        q.push(" FROM customer_tokens WHERE customer_pk = ").bind(Param::Id(customer.id));
        if !params.include_deleted {
            q.push(" AND deleted_at IS NULL");
        }
        if let Some(kind) = params.get("type") {
            q.push(" AND type = ").bind(text(kind));
        }
    };
    let mut q = SqlBuilder::new(conn.dialect(), "SELECT ");
    q.push(TOKEN_COLUMNS);
    filter(&mut q);
    if let Some(after) = &cursor {
        push_desc_cursor(&mut q, "created_at", after.created_at.0, "token_id", text(&after.token_id));
    }
    q.push(" ORDER BY created_at DESC, token_id ASC LIMIT ").bind(Param::Int(i64::from(params.limit) + 1));
    let rows = select_tokens(conn, q).await?;
    let total = if params.total {
        let mut q = SqlBuilder::new(conn.dialect(), "SELECT count(*)");
        filter(&mut q);
        conn.fetch_i64(q).await?
    } else {
        None
    };
    Ok(page(rows.into_iter().map(Into::into).collect(), params.limit, total))
}

pub(super) async fn delete_token(
    conn: &mut impl Conn,
    account: &AccountId,
    customer: CustomerRef<'_>,
    token_id: &str,
    actor: &str,
) -> Result<Option<Token>, StoreError> {
    let customer = live_for_update(conn, account, customer).await?;
    let mut q = SqlBuilder::new(conn.dialect(), "UPDATE customer_tokens SET ");
    query::push_assignments(&mut q, [("deleted_at", Param::Time(now_micros())), ("deleted_by", text(actor))]);
    q.push(" WHERE customer_pk = ")
        .bind(Param::Id(customer.id))
        .push(" AND token_id = ")
        .bind(text(token_id))
        .push(" AND deleted_at IS NULL");
    if conn.execute(q).await? == 0 {
        return Ok(None);
    }
    let mut q = SqlBuilder::new(conn.dialect(), "SELECT ");
    q.push(TOKEN_COLUMNS)
        .push(" FROM customer_tokens WHERE customer_pk = ")
        .bind(Param::Id(customer.id))
        .push(" AND token_id = ")
        .bind(text(token_id));
    let row = select_tokens(conn, q).await?.into_iter().next().ok_or(StoreError::NotFound)?;
    Ok(Some(row.into()))
}

// ---- token events ----------------------------------------------------------

db_row! {
    struct EventRow {
        id: Uuid,
        token_type: String,
        token_value: String,
        event: String,
        status: Option<String>,
        metadata: Option<Json<JsonObject>>,
        expires_at: Option<Ts>,
        created_at: Ts,
        created_by: String,
        deleted_at: Option<Ts>,
        deleted_by: Option<String>,
    }
}

impl From<EventRow> for TokenEvent {
    fn from(r: EventRow) -> Self {
        TokenEvent {
            id: r.id,
            token: TokenRef { kind: r.token_type, value: r.token_value },
            event: r.event,
            status: r.status,
            metadata: r.metadata.map(|m| m.0),
            expires_at: r.expires_at.map(|t| t.0),
            created_at: r.created_at.0,
            created_by: r.created_by,
            deleted_at: r.deleted_at.map(|t| t.0),
            deleted_by: r.deleted_by,
        }
    }
}

const EVENT_COLUMNS: &str = "id, token_type, token_value, event, status, metadata, expires_at, created_at, \
                             created_by, deleted_at, deleted_by";

/// Soft-deletes every live event of a token.
async fn clear_events(
    conn: &mut impl Conn,
    account: &AccountId,
    token: &TokenRef,
    at: DateTime<Utc>,
    actor: &str,
) -> Result<(), StoreError> {
    let mut q = SqlBuilder::new(conn.dialect(), "UPDATE token_events SET ");
    query::push_assignments(&mut q, [("deleted_at", Param::Time(at)), ("deleted_by", text(actor))]);
    push_token_match(&mut q, account, token);
    q.push(" AND deleted_at IS NULL");
    conn.execute(q).await.map(drop)
}

fn push_token_match(q: &mut SqlBuilder, account: &AccountId, token: &TokenRef) {
    q.push(" WHERE account_id = ")
        .bind(text(account.as_str()))
        .push(" AND token_type = ")
        .bind(text(&token.kind))
        .push(" AND token_value = ")
        .bind(text(&token.value));
}

async fn insert_event(
    conn: &mut impl Conn,
    account: &AccountId,
    token: &TokenRef,
    event: EventInput,
    settings: &Settings,
    actor: &str,
) -> Result<(), StoreError> {
    let at = now_micros();
    let status = event.status;
    // An explicit expiry wins; else the settings' time-to-live for the status.
    let expires_at = event.expires_at.or_else(|| {
        let ttl = settings.event_ttl(status.as_deref()?)?;
        Some(at + chrono::Duration::seconds(i64::try_from(ttl).ok()?))
    });
    let mut q = SqlBuilder::new(
        conn.dialect(),
        "INSERT INTO token_events (id, account_id, token_type, token_value, event, status, metadata, expires_at, \
         created_at, created_by) VALUES (",
    );
    query::push_list(
        &mut q,
        [
            Param::Id(new_id()),
            text(account.as_str()),
            text(&token.kind),
            text(&token.value),
            text(&event.event),
            opt_text(status.as_ref()),
            json_param(&event.metadata)?,
            expires_at.map_or(Param::NullTime, Param::Time),
            Param::Time(at),
            text(actor),
        ],
    );
    q.push(")");
    conn.execute(q).await.map(drop)
}

pub(super) async fn record_token_event(
    conn: &mut impl Conn,
    account: &AccountId,
    request: TokenEventRequest,
    actor: &str,
) -> Result<TokenDetail, StoreError> {
    if let Some(event) = request.event {
        let settings = load_settings(conn, account).await?;
        insert_event(conn, account, &request.token, event, &settings, actor).await?;
    }
    token_detail(conn, account, &request.token).await
}

pub(super) async fn clear_token_events(
    conn: &mut impl Conn,
    account: &AccountId,
    request: ClearTokenEvents,
    actor: &str,
) -> Result<(), StoreError> {
    clear_events(conn, account, &request.token, now_micros(), actor).await?;
    if let Some(event) = request.deleted_event() {
        let settings = load_settings(conn, account).await?;
        insert_event(conn, account, &request.token, event, &settings, actor).await?;
    }
    Ok(())
}

/// What is known of a token: its owner and token record if a customer holds
/// it, its live events, and the resulting status (§7).
async fn token_detail(conn: &mut impl Conn, account: &AccountId, token: &TokenRef) -> Result<TokenDetail, StoreError> {
    let (token_record, owner) = token_owner(conn, account, token).await?;
    let mut q = SqlBuilder::new(conn.dialect(), "SELECT ");
    q.push(EVENT_COLUMNS).push(" FROM token_events");
    push_token_match(&mut q, account, token);
    q.push(" AND deleted_at IS NULL ORDER BY created_at ASC, id ASC");
    let rows: Vec<EventRow> = conn.fetch_all(q).await?;
    let events: Vec<TokenEvent> = rows.into_iter().map(Into::into).collect();
    Ok(TokenDetail {
        id: token_key(token_record.as_ref(), token),
        status: token_status(owner.as_ref(), &events, now_micros()),
        customer: owner,
        token: token_record,
        events,
    })
}

/// The live token record of this type and value, and the customer holding it.
async fn token_owner(
    conn: &mut impl Conn,
    account: &AccountId,
    token: &TokenRef,
) -> Result<(Option<Token>, Option<Customer>), StoreError> {
    let mut q = SqlBuilder::new(conn.dialect(), "SELECT ");
    q.push(TOKEN_COLUMNS)
        .push(" FROM customer_tokens WHERE account_id = ")
        .bind(text(account.as_str()))
        .push(" AND type = ")
        .bind(text(&token.kind))
        .push(" AND value = ")
        .bind(text(&token.value))
        .push(" AND deleted_at IS NULL");
    let owned = select_tokens(conn, q).await?.into_iter().next();
    let owner = match &owned {
        Some(row) => {
            let mut q = SqlBuilder::new(conn.dialect(), "SELECT ");
            q.push(CUSTOMER_COLUMNS).push(" FROM customers c WHERE c.id = ").bind(Param::Id(row.customer_pk));
            conn.fetch_customers(q).await?.into_iter().next()
        }
        None => None,
    };
    Ok((owned.map(Into::into), owner))
}

pub(super) async fn list_token_events(
    conn: &mut impl Conn,
    account: &AccountId,
    params: &EventListParams,
) -> Result<Page<TokenEvents>, StoreError> {
    let listing = EventListing::of(params);
    let cursor = match params.starting_after {
        None => None,
        Some(id) => {
            let mut q = SqlBuilder::new(conn.dialect(), "SELECT ");
            q.push(EVENT_COLUMNS)
                .push(" FROM token_events WHERE account_id = ")
                .bind(text(account.as_str()))
                .push(" AND id = ")
                .bind(Param::Id(id));
            let rows: Vec<EventRow> = conn.fetch_all(q).await?;
            let event: TokenEvent = rows
                .into_iter()
                .next()
                .ok_or_else(|| {
                    StoreError::invalid("starting_after", "invalid_cursor", "names no event of this account")
                })?
                .into();
            let at = if listing.deleted { event.deleted_at } else { Some(event.created_at) };
            Some((at.unwrap_or(event.created_at), id))
        }
    };
    // One row per token: its newest listed event (no listed event of the
    // same token is newer), in the order of those events.
    let column = listing.time_column();
    let mut q = SqlBuilder::new(conn.dialect(), "SELECT ");
    q.push(EVENT_COLUMNS).push(" FROM token_events e WHERE ");
    listing.push_filter(&mut q, account, "e");
    q.push(" AND NOT EXISTS (SELECT 1 FROM token_events n WHERE n.token_type = e.token_type")
        .push(" AND n.token_value = e.token_value AND ");
    listing.push_filter(&mut q, account, "n");
    q.push(" AND (n.").push(column).push(" > e.").push(column);
    q.push(" OR (n.").push(column).push(" = e.").push(column).push(" AND n.id > e.id)))");
    if let Some((at, id)) = cursor {
        q.push(" AND (e.").push(column).push(" > ").bind(Param::Time(at));
        q.push(" OR (e.").push(column).push(" = ").bind(Param::Time(at)).push(" AND e.id > ").bind(Param::Id(id));
        q.push("))");
    }
    q.push(" ORDER BY e.").push(column).push(" ASC, e.id ASC LIMIT ").bind(Param::Int(i64::from(params.limit) + 1));
    let newest: Vec<EventRow> = conn.fetch_all(q).await?;
    let page = page(newest, params.limit, None);
    let mut items = Vec::with_capacity(page.items.len());
    for row in page.items {
        let token = TokenRef { kind: row.token_type, value: row.token_value };
        items.push(token_events(conn, account, token, &listing).await?);
    }
    Ok(Page { items, has_more: page.has_more, total: None })
}

/// Which events `GET /customers/tokens/events` lists: live ones created
/// since a time, or (`deleted_since`) cleared ones cleared since a time.
struct EventListing {
    deleted: bool,
    since: Option<DateTime<Utc>>,
}

impl EventListing {
    fn of(params: &EventListParams) -> Self {
        match params.deleted_since {
            Some(at) => Self { deleted: true, since: Some(at) },
            None => Self { deleted: false, since: params.since },
        }
    }

    /// The time a listed event is ordered by.
    fn time_column(&self) -> &'static str {
        if self.deleted {
            "deleted_at"
        } else {
            "created_at"
        }
    }

    fn push_filter(&self, q: &mut SqlBuilder, account: &AccountId, alias: &str) {
        q.push(alias).push(".account_id = ").bind(text(account.as_str()));
        q.push(" AND ").push(alias).push(if self.deleted { ".deleted_at IS NOT NULL" } else { ".deleted_at IS NULL" });
        if let Some(since) = self.since {
            q.push(" AND ").push(alias).push(".").push(self.time_column()).push(" >= ").bind(Param::Time(since));
        }
    }
}

/// One token of the list: its listed events in their order (the newest,
/// the page's cursor, last) and the status its live events resolve to.
async fn token_events(
    conn: &mut impl Conn,
    account: &AccountId,
    token: TokenRef,
    listing: &EventListing,
) -> Result<TokenEvents, StoreError> {
    let (token_record, owner) = token_owner(conn, account, &token).await?;
    let dialect = conn.dialect();
    let select = |listing: &EventListing| {
        let mut q = SqlBuilder::new(dialect, "SELECT ");
        q.push(EVENT_COLUMNS).push(" FROM token_events e WHERE ");
        // Every live event of the token, or its cleared events since the time.
        let scope = EventListing { deleted: listing.deleted, since: listing.since.filter(|_| listing.deleted) };
        scope.push_filter(&mut q, account, "e");
        q.push(" AND e.token_type = ").bind(text(&token.kind)).push(" AND e.token_value = ").bind(text(&token.value));
        q.push(" ORDER BY e.").push(scope.time_column()).push(" ASC, e.id ASC");
        q
    };
    let all_live = EventListing { deleted: false, since: None };
    let live: Vec<TokenEvent> =
        conn.fetch_all::<EventRow>(select(&all_live)).await?.into_iter().map(Into::into).collect();
    let status = token_status(owner.as_ref(), &live, now_micros());
    let events = if listing.deleted {
        conn.fetch_all::<EventRow>(select(listing)).await?.into_iter().map(Into::into).collect()
    } else {
        live
    };
    Ok(TokenEvents { id: token_key(token_record.as_ref(), &token), token, status, events })
}
