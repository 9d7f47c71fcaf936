//! The account's settings (§8), written once over [`Conn`]: replaced whole,
//! with phone uniqueness re-derived when `allow_duplicates` changes.

use crate::domain::events::{Actor, EventName};
use crate::domain::ids::AccountId;
use crate::domain::settings::Settings;

use super::customers::load_settings;
use super::engine::Conn;
use super::events::{record, NewEvent};
use super::sql::{self, text, Param, SqlBuilder};
use super::{now_micros, StoreError};

/// Replaces the settings. Changing `allow_duplicates` re-derives the phone
/// uniqueness column of every live customer in the same transaction, so the
/// database keeps enforcing what the settings say.
pub(super) async fn put_settings(
    conn: &mut impl Conn,
    account: &AccountId,
    settings: Settings,
    actor: Actor<'_>,
) -> Result<Settings, StoreError> {
    let before = load_settings(conn, account).await?;
    let doc = Param::json(&settings)?;
    let mut q = SqlBuilder::new(
        conn.dialect(),
        "INSERT INTO account_settings (account_id, doc, updated_at, updated_by) VALUES (",
    );
    sql::push_list(&mut q, [text(account.as_str()), doc, Param::Time(now_micros()), text(actor.name)]);
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
    // Events travel to webhook receivers: the auto tokens' secrets stay here.
    let data = serde_json::to_value(settings.clone().without_secrets())?;
    let mut event = NewEvent::account(EventName::CustomersSettingsUpdate, &data);
    let before = serde_json::to_value(before.without_secrets())?;
    event.changes = Some(crate::domain::events::changes(&before, &data));
    record(conn, account, event, actor).await?;
    Ok(settings)
}
