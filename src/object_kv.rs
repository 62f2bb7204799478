//! The small key/value table a Durable Object keeps in its SQLite storage beside its own
//! tables: which site it serves, cached settings. The object is the table's only writer, so
//! what it read or wrote is remembered for the life of the instance.

use std::cell::RefCell;
use std::collections::HashMap;

use worker::{Result, SqlStorage};

use crate::row::from_row;
use crate::sql_text;

pub struct ObjectKv {
    sql: SqlStorage,
    known: RefCell<HashMap<String, Option<String>>>,
}

impl ObjectKv {
    /// Opens the table, creating it if needed (once per instance).
    pub fn open(sql: SqlStorage) -> ObjectKv {
        let _ = sql.exec(
            "CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v TEXT NOT NULL)",
            None,
        );
        ObjectKv {
            sql,
            known: RefCell::new(HashMap::new()),
        }
    }

    /// The value of `key`, or none when there is none or it cannot be read (see `read`).
    pub fn get(&self, key: &str) -> Option<String> {
        self.read(key).ok().flatten()
    }

    /// The value of `key`, telling "none stored" from "storage failed"; a failure is not
    /// remembered, so the next read tries again.
    pub fn read(&self, key: &str) -> Result<Option<String>> {
        if let Some(value) = self.known.borrow().get(key) {
            return Ok(value.clone());
        }
        from_row! {
            struct Row {
                v: String,
            }
        }
        let value =
            sql_text::rows::<Row>(&self.sql, "SELECT v FROM kv WHERE k = ?", vec![key.into()])?
                .into_iter()
                .next()
                .map(|r| r.v);
        self.known
            .borrow_mut()
            .insert(key.to_string(), value.clone());
        Ok(value)
    }

    pub fn put(&self, key: &str, value: &str) -> Result<()> {
        self.sql.exec(
            "INSERT INTO kv (k, v) VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v",
            vec![key.into(), value.into()],
        )?;
        self.known
            .borrow_mut()
            .insert(key.to_string(), Some(value.to_string()));
        Ok(())
    }

    /// Writes `value` only when `key` has none yet.
    pub fn put_if_absent(&self, key: &str, value: &str) -> Result<()> {
        if self.get(key).is_some() {
            return Ok(());
        }
        self.put(key, value)
    }
}
