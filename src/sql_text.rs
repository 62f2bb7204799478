//! SQL statements handed to the runtime with their text as JavaScript strings made once, and
//! their rows read into Parley's types (`row.rs`).
//!
//! Every call that takes SQL text as a Rust `&str` decodes it into a new JavaScript string. On
//! the message path that was three statements on the conversation's storage and two in the
//! site's D1 batch per message: about 2 KB of short-lived heap per message (measured with V8's
//! sampling heap profiler), and the young-generation collections it feeds are what stall the
//! runtime under load. The same few texts come round again and again, so each is made once
//! per isolate and kept.

use std::cell::RefCell;
use std::collections::HashMap;

use js_sys::{Array, JsString, Promise, Reflect};
use wasm_bindgen::prelude::*;
use worker::wasm_bindgen_futures::JsFuture;
use worker::worker_sys::{D1PreparedStatement as D1StatementSys, SqlStorageCursor};
use worker::{D1Database, D1PreparedStatement, SqlStorage, SqlStorageValue};

use crate::row::{read_all, Columns, FromRow};

#[wasm_bindgen]
extern "C" {
    /// A D1 binding, seen only for `prepare` and `batch`.
    type D1Handle;
    #[wasm_bindgen(structural, method, catch, js_name = prepare)]
    fn prepare_text(this: &D1Handle, query: &JsString) -> Result<D1StatementSys, JsValue>;
    #[wasm_bindgen(structural, method, catch, js_name = batch)]
    fn batch_of(this: &D1Handle, statements: Array) -> Result<Promise, JsValue>;

    /// A Durable Object's SQL storage, seen only for `exec`.
    type SqlHandle;
    #[wasm_bindgen(structural, method, catch, variadic, js_name = exec)]
    fn exec_text(
        this: &SqlHandle,
        query: &JsString,
        bindings: Array,
    ) -> Result<SqlStorageCursor, JsValue>;
}

/// Texts kept at most: statements and the column names rows are read by (`row.rs`) are written
/// in the code, so a few hundred exist; the bound only guards against a caller that builds its
/// text from data.
const KEPT_TEXTS: usize = 512;

thread_local! {
    static TEXTS: RefCell<HashMap<String, JsString>> = RefCell::new(HashMap::new());
}

/// `query` (or a column's name) as a JavaScript string, made once per isolate.
pub(crate) fn text(query: &str) -> JsString {
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
    read_all(&exec(sql, query, bindings)?.to_array())
}

/// Waits for a D1 call's promise; a rejection becomes the error it carries.
async fn settled(promise: Result<Promise, JsValue>) -> worker::Result<JsValue> {
    Ok(JsFuture::from(promise?).await?)
}

/// The rows of a D1 result object (`{results: [...], ...}`); none when it has no results.
fn results_of(result: &JsValue) -> worker::Result<Array> {
    let results = Reflect::get(result, &text("results"))?;
    if results.is_null() || results.is_undefined() {
        return Ok(Array::new());
    }
    Ok(results.dyn_into::<Array>()?)
}

/// Reads through a bound D1 statement.
pub(crate) trait D1Rows {
    /// Runs the statement and reads its rows.
    async fn all_rows<T: FromRow>(&self) -> worker::Result<Vec<T>>;
    /// Runs the statement and reads its first row, if any.
    async fn first_row<T: FromRow>(&self) -> worker::Result<Option<T>>;
}

impl D1Rows for D1PreparedStatement {
    async fn all_rows<T: FromRow>(&self) -> worker::Result<Vec<T>> {
        read_all(&all_objects(self).await?)
    }

    async fn first_row<T: FromRow>(&self) -> worker::Result<Option<T>> {
        first_object(self)
            .await?
            .map(|row| T::from_row(&Columns::new(row)))
            .transpose()
    }
}

// The waiting, apart from the reading: one copy of it, not one per row type.
async fn all_objects(statement: &D1PreparedStatement) -> worker::Result<Array> {
    results_of(&settled(statement.inner().all()).await?)
}

async fn first_object(statement: &D1PreparedStatement) -> worker::Result<Option<JsValue>> {
    let row = settled(statement.inner().first(None)).await?;
    Ok((!row.is_null() && !row.is_undefined()).then_some(row))
}

/// The results of a D1 batch, one per statement, whose rows can be read.
pub struct BatchResults(Vec<JsValue>);

impl BatchResults {
    /// The rows of the `index`-th statement.
    pub fn rows<T: FromRow>(&self, index: usize) -> worker::Result<Vec<T>> {
        let result = self
            .0
            .get(index)
            .ok_or_else(|| worker::Error::RustError(format!("no result {index} in the batch")))?;
        read_all(&results_of(result)?)
    }
}

/// Runs statements as one D1 batch (one transaction), keeping their results readable.
pub async fn batch(
    db: &D1Database,
    statements: &[D1PreparedStatement],
) -> worker::Result<BatchResults> {
    let handle: &D1Handle = db.as_ref().unchecked_ref();
    let list = statements
        .iter()
        .map(|s| JsValue::from(s.inner()))
        .collect::<Array>();
    let results = settled(handle.batch_of(list)).await?;
    Ok(BatchResults(results.dyn_into::<Array>()?.to_vec()))
}
