//! Migration parity: both backends, freshly migrated, have the same tables,
//! the same columns (by name and nullability) and the same named indexes,
//! except where the design differs on purpose (listed here, with why).

use std::collections::BTreeSet;

use customers::store::Constraint;

use crate::helpers::{Backend, TestDatabase};

/// Indexes only PostgreSQL names, and why: SQLite's primary keys and
/// inline `UNIQUE` constraints are unnamed automatic indexes (left out of
/// its list), where PostgreSQL names them `<table>_pkey` / `…_key`.
const ONLY_POSTGRES_INDEXES: &[&str] = &["signing_keys_singleton_key"];

fn is_primary_key(name: &str) -> bool {
    name.ends_with("_pkey")
}

/// `table.column` of every column, with `NOT NULL` marked.
async fn columns(db: &TestDatabase) -> BTreeSet<String> {
    let sql = match db.backend {
        Backend::Sqlite => {
            "SELECT m.name || '.' || p.name || CASE WHEN p.\"notnull\" = 1 OR p.pk > 0 THEN ' NOT NULL' ELSE '' END \
             FROM sqlite_master m, pragma_table_info(m.name) p \
             WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND m.name <> '_sqlx_migrations'"
        }
        Backend::Postgres => {
            "SELECT table_name || '.' || column_name || CASE WHEN is_nullable = 'NO' THEN ' NOT NULL' ELSE '' END \
             FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name <> '_sqlx_migrations'"
        }
    };
    db.query_text(sql, &[]).await.into_iter().flatten().collect()
}

/// The names of every index (primary keys and unique constraints included).
async fn indexes(db: &TestDatabase) -> BTreeSet<String> {
    let sql = match db.backend {
        Backend::Sqlite => "SELECT name FROM sqlite_master WHERE type = 'index' AND name NOT LIKE 'sqlite_autoindex_%'",
        Backend::Postgres => {
            "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() AND tablename <> '_sqlx_migrations'"
        }
    };
    db.query_text(sql, &[]).await.into_iter().flatten().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_backends_migrate_to_the_same_tables_columns_and_indexes() {
    let (sqlite, postgres) =
        (TestDatabase::create(Backend::Sqlite).await, TestDatabase::create(Backend::Postgres).await);
    let _ = (sqlite.open().await, postgres.open().await);

    let (sqlite_columns, postgres_columns) = (columns(&sqlite).await, columns(&postgres).await);
    assert!(sqlite_columns.len() > 20, "the queries see the schema: {sqlite_columns:?}");
    let only_sqlite: Vec<_> = sqlite_columns.difference(&postgres_columns).collect();
    let only_postgres: Vec<_> = postgres_columns.difference(&sqlite_columns).collect();
    assert!(
        only_sqlite.is_empty() && only_postgres.is_empty(),
        "SQLite only: {only_sqlite:#?}\nPostgreSQL only: {only_postgres:#?}"
    );

    let (sqlite_indexes, postgres_indexes) = (indexes(&sqlite).await, indexes(&postgres).await);
    let only_sqlite: Vec<_> = sqlite_indexes.difference(&postgres_indexes).collect();
    let only_postgres: Vec<_> = postgres_indexes
        .difference(&sqlite_indexes)
        .filter(|i| !is_primary_key(i) && !ONLY_POSTGRES_INDEXES.contains(&i.as_str()))
        .collect();
    assert!(
        only_sqlite.is_empty() && only_postgres.is_empty(),
        "SQLite only: {only_sqlite:#?}\nPostgreSQL only: {only_postgres:#?}"
    );

    // Every constraint the API maps to an answer exists under its name
    // (SQLite's primary keys are unnamed; it reports them by column).
    for constraint in Constraint::ALL {
        let name = constraint.index_name();
        assert!(postgres_indexes.contains(name), "{constraint:?}: PostgreSQL has no index {name}");
        assert!(sqlite_indexes.contains(name) || is_primary_key(name), "{constraint:?}: SQLite has no index {name}");
    }
}
