//! Terms (§8), written once over [`Conn`]: created, read, listed newest
//! first and soft-deleted.

use uuid::Uuid;

use crate::domain::ids::AccountId;
use crate::domain::listing::PageParams;
use crate::domain::records::Terms;

use super::engine::Conn;
use super::rows::{db_row, Ts};
use super::sql::{self, text, Param, SqlBuilder};
use super::{new_id, now_micros, Page, StoreError};

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
    sql::push_list(
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
        sql::push_desc_cursor(&mut q, "created_at", after.created_at, "id", Param::Id(after.id));
    }
    q.push(" ORDER BY created_at DESC, id ASC LIMIT ").bind(Param::Int(i64::from(params.limit) + 1));
    let rows: Vec<TermsRow> = conn.fetch_all(q).await?;
    let total = conn.count_if(params.total, &filter).await?;
    Ok(Page::from_rows(rows.into_iter().map(Into::into).collect(), params.limit, total))
}

pub(super) async fn delete_terms(
    conn: &mut impl Conn,
    account: &AccountId,
    id: Uuid,
    actor: &str,
) -> Result<Terms, StoreError> {
    let at = now_micros();
    let mut q = SqlBuilder::new(conn.dialect(), "UPDATE terms SET ");
    sql::push_assignments(&mut q, [("deleted_at", Param::Time(at)), ("deleted_by", text(actor))]);
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
