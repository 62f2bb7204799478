//! The small key/value table a Durable Object keeps in its SQLite storage beside its own
//! tables: which site it serves, cached settings.

use serde::Deserialize;
use worker::{Result, SqlStorage};

pub const KV_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v TEXT NOT NULL);";

pub fn get(sql: &SqlStorage, key: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Row {
        v: String,
    }
    sql.exec("SELECT v FROM kv WHERE k = ?", vec![key.into()])
        .ok()?
        .to_array::<Row>()
        .ok()?
        .into_iter()
        .next()
        .map(|r| r.v)
}

pub fn put(sql: &SqlStorage, key: &str, value: &str) -> Result<()> {
    sql.exec(
        "INSERT INTO kv (k, v) VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v",
        vec![key.into(), value.into()],
    )
    .map(|_| ())
}

/// Writes `value` only when `key` has none yet.
pub fn put_if_absent(sql: &SqlStorage, key: &str, value: &str) -> Result<()> {
    sql.exec(
        "INSERT INTO kv (k, v) VALUES (?, ?) ON CONFLICT (k) DO NOTHING",
        vec![key.into(), value.into()],
    )
    .map(|_| ())
}
