//! Tags (§5), written once over [`Conn`]: the account's tags and each
//! customer's set of them.

use serde_json::json;
use sqlx::types::Json;
use uuid::Uuid;

use crate::domain::customer::JsonObject;
use crate::domain::events::{Actor, EventName};
use crate::domain::ids::AccountId;
use crate::domain::records::{Tag, TagInput};

use super::customers::live_for_update;
use super::engine::Conn;
use super::events::{record, NewEvent};
use super::rows::{db_row, Ts};
use super::sql::{self, text, Param, SqlBuilder};
use super::{new_id, now_micros, CustomerRef, StoreError};

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
    sql::push_list(
        &mut q,
        [
            Param::Id(tag.id),
            text(account.as_str()),
            text(&tag.tag),
            sql::json_or_null(&tag.metadata)?,
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

pub(super) async fn set_customer_tags(
    conn: &mut impl Conn,
    account: &AccountId,
    customer: CustomerRef<'_>,
    tags: &[Uuid],
    actor: Actor<'_>,
) -> Result<Vec<Tag>, StoreError> {
    let customer = live_for_update(conn, account, customer).await?;
    let before = customer_tags(conn, account, customer.id).await?;
    let mut wanted: Vec<Uuid> = Vec::new();
    for id in tags {
        if !wanted.contains(id) {
            wanted.push(*id);
        }
    }
    if !wanted.is_empty() {
        let mut q = SqlBuilder::new(conn.dialect(), "SELECT count(*) FROM tags WHERE account_id = ");
        q.bind(text(account.as_str())).push(" AND id IN (");
        sql::push_list(&mut q, wanted.iter().map(|id| Param::Id(*id)));
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
        sql::push_list(&mut q, [Param::Id(customer.id), Param::Id(*id)]);
        q.push(")");
        conn.execute(q).await?;
    }
    let after = customer_tags(conn, account, customer.id).await?;
    let (before, data) = (json!({"tags": before}), json!({"customer_id": customer.customer_id, "tags": after}));
    let changes = crate::domain::events::changes(&before, &data);
    let event = NewEvent {
        data: data.to_string(),
        changes: Some(changes),
        ..NewEvent::about(EventName::CustomerTagsUpdate, &customer)
    };
    record(conn, account, event, actor).await?;
    Ok(after)
}
