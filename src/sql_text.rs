//! SQL statements handed to the runtime with their text as JavaScript strings made once.
//!
//! Every call that takes SQL text as a Rust `&str` decodes it into a new JavaScript string. On
//! the message path that was three statements on the conversation's storage and two in the
//! site's D1 batch per message: about 2 KB of short-lived heap per message (measured with V8's
//! sampling heap profiler), and the young-generation collections it feeds are what stall the
//! runtime under load. The same few texts come round again and again, so each is made once
//! per isolate and kept.

use std::cell::RefCell;
use std::collections::HashMap;

use js_sys::{Array, JsString};
use wasm_bindgen::prelude::*;
use worker::worker_sys::{D1PreparedStatement as D1StatementSys, SqlStorageCursor};
use worker::{D1Database, D1PreparedStatement, SqlStorage, SqlStorageValue};

use crate::row::FromRow;

#[wasm_bindgen]
extern "C" {
    /// A D1 binding, seen only for `prepare`.
    type D1Handle;
    #[wasm_bindgen(structural, method, catch, js_name = prepare)]
    fn prepare_text(this: &D1Handle, query: &JsString) -> Result<D1StatementSys, JsValue>;

    /// A Durable Object's SQL storage, seen only for `exec`.
    type SqlHandle;
    #[wasm_bindgen(structural, method, catch, variadic, js_name = exec)]
    fn exec_text(
        this: &SqlHandle,
        query: &JsString,
        bindings: Array,
    ) -> Result<SqlStorageCursor, JsValue>;
}

/// Texts kept at most: statements are written in the code, so a few dozen exist; the bound
/// only guards against a caller that builds its text from data.
const KEPT_TEXTS: usize = 256;

thread_local! {
    static TEXTS: RefCell<HashMap<String, JsString>> = RefCell::new(HashMap::new());
}

fn text(query: &str) -> JsString {
    TEXTS.with(|texts| {
        if let Some(kept) = texts.borrow().get(query) {
            return kept.clone();
        }
        let made = JsString::from(query);
        let mut texts = texts.borrow_mut();
        if texts.len() < KEPT_TEXTS {
            texts.insert(query.to_string(), made.clone());
        }
        made
    })
}

/// A D1 statement, not yet bound.
pub fn prepare(db: &D1Database, query: &str) -> worker::Result<D1PreparedStatement> {
    let raw: &D1Handle = db.as_ref().unchecked_ref();
    Ok(raw.prepare_text(&text(query))?.into())
}

/// Runs one statement on a Durable Object's SQL storage.
pub fn exec(
    sql: &SqlStorage,
    query: &str,
    bindings: Vec<SqlStorageValue>,
) -> worker::Result<SqlStorageCursor> {
    let raw: &SqlHandle = sql.as_ref().unchecked_ref();
    let values = Array::new_with_length(bindings.len() as u32);
    for (i, binding) in bindings.into_iter().enumerate() {
        values.set(i as u32, binding.into());
    }
    Ok(raw.exec_text(&text(query), values)?)
}

/// Runs one statement on a Durable Object's SQL storage and decodes its rows.
pub fn rows<T: FromRow>(
    sql: &SqlStorage,
    query: &str,
    bindings: Vec<SqlStorageValue>,
) -> worker::Result<Vec<T>> {
    crate::row::read_all(&exec(sql, query, bindings)?.to_array())
}
