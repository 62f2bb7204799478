//! Exports of a team's data for a date range: messages, conversations and the audit log, as
//! CSV (safe to open in a spreadsheet) or JSON. Streamed page by page from D1, so an export of
//! any size runs in constant memory. Every export is written to the audit log.

use futures::{stream, StreamExt};
use parley_core::csv;
use parley_core::export::{start_after, Dataset, Keyset};
use parley_core::token::Principal;
use parley_core::ErrorCode;
use wasm_bindgen::JsValue;
use worker::{Env, Headers, Request, Response};

use crate::api::{authenticate, Ctx};
use crate::console::audit;
use crate::http::{ApiError, ApiResult};
use crate::log::Log;
use crate::query::from_query;

/// Rows read from D1 per page.
const PAGE: u32 = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Csv,
    Json,
}

/// The text column of an event: a message's text, a file's name, the answers of the form the
/// conversation began with (one `name: answer` per line), a rating (`4/5`, then its comment).
fn event_text(kind: &str, body: &serde_json::Value) -> String {
    match kind {
        "created" => body["fields"]
            .as_object()
            .map(|fields| {
                fields
                    .iter()
                    .map(|(name, answer)| {
                        format!("{name}: {}", answer.as_str().unwrap_or_default())
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default(),
        "rated" => {
            let score = body["score"].as_u64().unwrap_or_default();
            match body["comment"].as_str() {
                Some(comment) => format!("{score}/5\n{comment}"),
                None => format!("{score}/5"),
            }
        }
        _ => body["text"]
            .as_str()
            .or_else(|| body["file"]["name"].as_str())
            .unwrap_or_default()
            .to_string(),
    }
}

/// A row as read, turned into output fields and the cursor after it.
fn row_fields(dataset: Dataset, row: &serde_json::Value, mask: bool) -> (Vec<String>, Keyset) {
    let text = |k: &str| match &row[k] {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let num = |k: &str| row[k].as_f64().unwrap_or(0.0) as i64;
    let time = |k: &str| match row[k].as_f64() {
        Some(ms) => csv::iso8601(ms as i64),
        None => String::new(),
    };
    match dataset {
        Dataset::Messages => {
            let body: serde_json::Value =
                parley_core::json::from_str(&text("body")).unwrap_or_default();
            let kind = text("kind");
            let mut content = event_text(&kind, &body);
            // As everywhere agents read: the visitor's words, the answers of their form, and
            // translations (which may be of them).
            let visitors_words =
                text("author_role") == "visitor" || kind == "translation" || kind == "created";
            if mask && visitors_words {
                content = parley_core::pii::mask(&content).0;
            }
            let fields = vec![
                text("conversation_id"),
                num("seq").to_string(),
                time("created_at"),
                text("site_id"),
                text("visitor_id"),
                text("kind"),
                text("author_role"),
                text("author_id"),
                text("author_name"),
                content,
            ];
            (
                fields,
                (num("created_at"), text("conversation_id"), num("seq")),
            )
        }
        Dataset::Conversations => {
            let fields = vec![
                text("id"),
                text("site_id"),
                text("visitor_id"),
                text("status"),
                text("assignee_id"),
                time("created_at"),
                time("updated_at"),
                num("last_seq").to_string(),
                time("last_message_at"),
            ];
            (fields, (num("created_at"), text("id"), 0))
        }
        Dataset::Audit => {
            let fields = vec![
                num("id").to_string(),
                time("created_at"),
                text("actor_id"),
                text("action"),
                text("target"),
                text("detail"),
            ];
            (fields, (num("created_at"), num("id").to_string(), 0))
        }
    }
}

struct Cursor {
    env: Env,
    dataset: Dataset,
    format: Format,
    team: String,
    site: String,
    to: i64,
    mask: bool,
    after: Keyset,
    started: bool,
    first_row: bool,
    done: bool,
}

async fn next_chunk(mut c: Cursor) -> Option<(worker::Result<Vec<u8>>, Cursor)> {
    if c.done {
        return None;
    }
    let mut out = String::new();
    if !c.started {
        c.started = true;
        match c.format {
            Format::Csv => out.push_str(&csv::line(c.dataset.header().iter())),
            Format::Json => out.push('['),
        }
    }
    let page = async {
        c.env
            .d1("DB")?
            .prepare(c.dataset.page_query())
            .bind(&[
                c.team.as_str().into(),
                c.site.as_str().into(),
                JsValue::from_f64(c.to as f64),
                JsValue::from_f64(c.after.0 as f64),
                c.after.1.as_str().into(),
                JsValue::from_f64(c.after.2 as f64),
                JsValue::from(PAGE),
            ])?
            .all()
            .await?
            .results::<serde_json::Value>()
    }
    .await;
    let rows = match page {
        Ok(rows) => rows,
        Err(e) => {
            // Past the first page the answer's status is sent: the file ends short, and the log
            // is where an operator finds why.
            Log::error("export_page_failed")
                .error_class("storage_unavailable")
                .field("dataset", c.dataset.name())
                .field("detail", e.to_string())
                .emit();
            return Some((Err(e), Cursor { done: true, ..c }));
        }
    };
    for row in &rows {
        let (fields, cursor) = row_fields(c.dataset, row, c.mask);
        match c.format {
            Format::Csv => out.push_str(&csv::line(fields.iter())),
            Format::Json => {
                if !c.first_row {
                    out.push(',');
                }
                let object: serde_json::Map<String, serde_json::Value> = c
                    .dataset
                    .header()
                    .iter()
                    .zip(fields)
                    .map(|(k, v)| (k.to_string(), serde_json::Value::String(v)))
                    .collect();
                out.push_str(&serde_json::Value::Object(object).to_string());
                out.push('\n');
            }
        }
        c.first_row = false;
        c.after = cursor;
    }
    if (rows.len() as u32) < PAGE {
        c.done = true;
        if c.format == Format::Json {
            out.push(']');
        }
    }
    Some((Ok(out.into_bytes()), c))
}

/// `GET /api/v1/export/{dataset}.{csv|json}?from=&to=&site=` (ms or ISO dates; `to` exclusive).
pub async fn export(req: &Request, ctx: &Ctx, file: &str) -> ApiResult {
    from_query! {
        struct Query {
            from: Option<String>,
            to: Option<String>,
            site: Option<String>,
        }
    }
    let principal = authenticate(ctx)?;
    let Principal::Agent { id, team, .. } = &principal else {
        return Err(ErrorCode::Forbidden.into());
    };
    if !principal.can_export() {
        return Err(ErrorCode::Forbidden.into());
    }
    let (name, format) = match file.rsplit_once('.') {
        Some((name, "csv")) => (name, Format::Csv),
        Some((name, "json")) => (name, Format::Json),
        _ => return Err(ErrorCode::NotFound.into()),
    };
    let dataset = Dataset::parse(name).ok_or(ErrorCode::NotFound)?;
    let query: Query = crate::http::query(req)?;
    let from = crate::http::time_param(query.from.as_deref())?.unwrap_or(0);
    let to = crate::http::time_param(query.to.as_deref())?.unwrap_or(i64::MAX / 2);
    if to <= from {
        return Err(ErrorCode::InvalidRequest.into());
    }
    let site = query.site.unwrap_or_default();
    if dataset == Dataset::Audit && !site.is_empty() {
        // The audit log is the team's, not a site's: an empty file would look like no entries.
        return Err(ErrorCode::InvalidRequest.into());
    }
    audit(
        ctx,
        team,
        id,
        "export",
        dataset.name(),
        serde_json::json!({ "from": from, "to": to, "site": site, "format": if format == Format::Csv { "csv" } else { "json" } }),
    )
    .await?;
    let cursor = Cursor {
        env: ctx.env.clone(),
        dataset,
        format,
        team: team.clone(),
        site,
        to,
        mask: !principal.sees_pii(),
        after: start_after(from),
        started: false,
        first_row: true,
        done: false,
    };
    // The first page is read before the answer starts, so a query that cannot run at all (D1
    // down, a migration not applied) is an error status, not a 200 cut short.
    let (first, rest) = match next_chunk(cursor).await {
        Some((Ok(first), rest)) => (first, rest),
        Some((Err(_), _)) | None => return Err(ErrorCode::StorageUnavailable.into()),
    };
    let body = stream::once(async move { Ok(first) }).chain(stream::unfold(rest, next_chunk));
    let headers = Headers::new();
    let set = |k: &str, v: &str| {
        headers
            .set(k, v)
            .map_err(|_| ApiError::from(ErrorCode::Internal))
    };
    match format {
        Format::Csv => set("content-type", "text/csv; charset=utf-8")?,
        Format::Json => set("content-type", "application/json; charset=utf-8")?,
    }
    set(
        "content-disposition",
        &format!("attachment; filename=\"parley-{file}\""),
    )?;
    set("cache-control", "no-store")?;
    set("x-content-type-options", "nosniff")?;
    Ok(Response::from_stream(body)
        .map_err(|_| ApiError::from(ErrorCode::Internal))?
        .with_headers(headers))
}
