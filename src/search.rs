//! Full-text search over a team's messages (D1 FTS5, trigram), with filters by site, agent,
//! tag, date and visitor country. Results name the conversation and `seq` to open.

use parley_core::token::Principal;
use parley_core::ErrorCode;
use serde::Serialize;
use wasm_bindgen::JsValue;
use worker::Request;

use crate::api::{authenticate, db, ok_json, Ctx, D1Statement};
use crate::http::ApiResult;
use crate::query::from_query;
use crate::row::from_row;

from_query! {
    struct Query {
        q: String,
        site: Option<String>,
        agent: Option<String>,
        tag: Option<String>,
        country: Option<String>,
        from: Option<String>,
        to: Option<String>,
        limit: Option<u32>,
    }
}

from_row! {
    #[derive(Serialize)]
    struct Hit {
        conversation_id: String,
        seq: i64,
        created_at: i64,
        site_id: String,
        author_role: String,
        text: String,
    }
}

/// The FTS5 query for what the user typed: each word must appear, as a literal phrase.
fn match_expression(q: &str) -> String {
    q.split_whitespace()
        .map(|word| format!("\"{}\"", word.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// `GET /api/v1/search?q=&site=&agent=&tag=&country=&from=&to=&limit=`
pub async fn search(req: &Request, ctx: &Ctx) -> ApiResult {
    let principal = authenticate(ctx)?;
    let Principal::Agent { team, .. } = &principal else {
        return Err(ErrorCode::Forbidden.into());
    };
    let query: Query = crate::http::query(req)?;
    let q = query.q.trim();
    if q.is_empty() || q.chars().count() > 200 {
        return Err(ErrorCode::InvalidRequest.into());
    }
    let from = crate::http::time_param(query.from.as_deref())?.unwrap_or(0);
    let to = crate::http::time_param(query.to.as_deref())?.unwrap_or(i64::MAX / 2);
    let limit = query.limit.unwrap_or(50).clamp(1, 200);
    // Trigrams need three characters per word; shorter words are matched by a scan instead.
    let indexed = q.split_whitespace().all(|w| w.chars().count() >= 3);
    let text_filter = if indexed {
        "m.rowid IN (SELECT m2.rowid FROM messages_fts f JOIN messages m2
           ON m2.conversation_id = f.conversation_id AND m2.seq = f.seq WHERE messages_fts MATCH ?2)"
    } else {
        "json_extract(m.body, '$.text') LIKE '%' || ?2 || '%' ESCAPE '\\'"
    };
    let needle = if indexed {
        match_expression(q)
    } else {
        q.replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_")
    };
    let sql = format!(
        "SELECT m.conversation_id, m.seq, m.created_at, c.site_id, m.author_role,
                json_extract(m.body, '$.text') AS text
         FROM messages m JOIN conversations c ON c.id = m.conversation_id
         LEFT JOIN visitors v ON v.id = c.visitor_id
         WHERE c.site_id IN (SELECT id FROM sites WHERE team_id = ?1) AND m.kind = 'message'
           AND {text_filter}
           AND (?3 = '' OR c.site_id = ?3)
           AND (?4 = '' OR c.assignee_id = ?4)
           AND (?5 = '' OR EXISTS (SELECT 1 FROM conversation_tags t WHERE t.conversation_id = c.id AND t.tag = ?5))
           AND (?6 = '' OR v.country = ?6)
           AND m.created_at >= ?7 AND m.created_at < ?8
         ORDER BY m.created_at DESC LIMIT ?9"
    );
    let arg = |v: &Option<String>| JsValue::from_str(v.as_deref().unwrap_or(""));
    let hits = db(ctx)?
        .prepare(sql)
        .bind(&[
            team.as_str().into(),
            needle.as_str().into(),
            arg(&query.site),
            arg(&query.agent),
            arg(&query.tag),
            JsValue::from_str(&query.country.as_deref().unwrap_or("").to_ascii_uppercase()),
            JsValue::from_f64(from as f64),
            JsValue::from_f64(to as f64),
            JsValue::from(limit),
        ])
        .rows::<Hit>(ctx)
        .await?;
    let mask = !principal.sees_pii();
    let words: Vec<String> = q.split_whitespace().map(str::to_lowercase).collect();
    let results: Vec<Hit> = hits
        .into_iter()
        .filter_map(|mut hit| {
            if mask && hit.author_role == "visitor" {
                hit.text = parley_core::pii::mask(&hit.text).0;
                // A hit that matched only inside what is masked would tell the searcher the
                // hidden value (search for a number, see which conversation has it): dropped.
                let shown = hit.text.to_lowercase();
                if !words.iter().all(|w| shown.contains(w.as_str())) {
                    return None;
                }
            }
            Some(hit)
        })
        .collect();
    ok_json(&serde_json::json!({ "results": results }), 200)
}
