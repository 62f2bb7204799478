//! `GET /api/v1/reports?from=&to=&site=&tz=&format=json|csv` for owners and admins: one summary
//! row per conversation from D1, turned into the report by `parley_core::reports`.

use std::collections::BTreeMap;

use parley_core::reports::{self, ConversationFacts, Report};
use parley_core::token::{AgentRole, Principal};
use parley_core::{csv, ErrorCode};
use wasm_bindgen::JsValue;
use worker::{Headers, Request, Response};

use crate::api::{authenticate, db, ok_json, Ctx, D1Statement};
use crate::http::{ApiError, ApiResult};
use crate::query::from_query;
use crate::row::from_row;

/// Most conversations one report reads: a bound on memory and time.
const MAX_CONVERSATIONS: u32 = 50_000;

from_query! {
    struct Query {
        from: Option<String>,
        to: Option<String>,
        site: Option<String>,
        tz: Option<String>,
        format: Option<String>,
    }
}

from_row! {
    struct Row {
        id: String,
        created_at: f64,
        assignee: Option<String>,
        first_visitor_message_at: Option<f64>,
        first_agent_message_at: Option<f64>,
        first_closed_at: Option<f64>,
        agent_messages: Option<f64>,
        visitor_messages: Option<f64>,
        rating: Option<f64>,
        country: Option<String>,
        utm_source: Option<String>,
        referrer: Option<String>,
    }
}

fn host_of(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let host = rest.split(['/', '?', '#']).next()?.rsplit('@').next()?;
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

pub async fn report(req: &Request, ctx: &Ctx) -> ApiResult {
    let principal = authenticate(ctx)?;
    let Principal::Agent { team, role, .. } = &principal else {
        return Err(ErrorCode::Forbidden.into());
    };
    if !matches!(role, AgentRole::Owner | AgentRole::Admin) {
        return Err(ErrorCode::Forbidden.into());
    }
    let query: Query = crate::http::query(req)?;
    let from = crate::http::time_param(query.from.as_deref())?.unwrap_or(0);
    let to = crate::http::time_param(query.to.as_deref())?.unwrap_or(i64::MAX / 2);
    let site = query.site.clone().unwrap_or_default();
    let tz = query.tz.clone().unwrap_or_else(|| "UTC".into());
    // ?1 team, ?2 site (or ''), ?3 from, ?4 to: shared by both queries.
    let range = [
        JsValue::from_str(team),
        JsValue::from_str(&site),
        JsValue::from_f64(from as f64),
        JsValue::from_f64(to as f64),
    ];
    let db = db(ctx)?;
    let rows = db
        .prepare(
            "SELECT c.id, c.created_at, c.assignee_id AS assignee,
               (SELECT MIN(m.created_at) FROM messages m WHERE m.conversation_id = c.id AND m.kind IN ('message', 'file') AND m.author_role = 'visitor') AS first_visitor_message_at,
               (SELECT MIN(m.created_at) FROM messages m WHERE m.conversation_id = c.id AND m.kind IN ('message', 'file') AND m.author_role = 'agent') AS first_agent_message_at,
               (SELECT MIN(m.created_at) FROM messages m WHERE m.conversation_id = c.id AND m.kind = 'closed') AS first_closed_at,
               (SELECT COUNT(*) FROM messages m WHERE m.conversation_id = c.id AND m.kind IN ('message', 'file') AND m.author_role = 'agent') AS agent_messages,
               (SELECT COUNT(*) FROM messages m WHERE m.conversation_id = c.id AND m.kind IN ('message', 'file') AND m.author_role = 'visitor') AS visitor_messages,
               (SELECT json_extract(m.body, '$.score') FROM messages m WHERE m.conversation_id = c.id AND m.kind = 'rated' ORDER BY m.seq DESC LIMIT 1) AS rating,
               v.country, json_extract(v.context, '$.utm.source') AS utm_source, json_extract(v.context, '$.referrer') AS referrer
             FROM conversations c LEFT JOIN visitors v ON v.id = c.visitor_id
             WHERE c.site_id IN (SELECT id FROM sites WHERE team_id = ?1) AND (?2 = '' OR c.site_id = ?2)
               AND c.created_at >= ?3 AND c.created_at < ?4
             ORDER BY c.created_at LIMIT ?5",
        )
        .bind(&[range.as_slice(), &[JsValue::from(MAX_CONVERSATIONS)]].concat())
        .rows::<Row>(ctx)
        .await?;
    from_row! {
        struct Missed {
            agent_id: String,
            n: f64,
        }
    }
    let missed: BTreeMap<String, u32> = db
        .prepare(
            "SELECT agent_id, COUNT(*) AS n FROM routing_events
             WHERE kind = 'missed' AND agent_id IS NOT NULL
               AND site_id IN (SELECT id FROM sites WHERE team_id = ?1) AND (?2 = '' OR site_id = ?2)
               AND created_at >= ?3 AND created_at < ?4
             GROUP BY agent_id",
        )
        .bind(&range)
        .rows::<Missed>(ctx)
        .await?
        .into_iter()
        .map(|m| (m.agent_id, m.n as u32))
        .collect();
    let ms = |v: Option<f64>| v.map(|x| x as i64);
    let facts: Vec<ConversationFacts> = rows
        .into_iter()
        .map(|r| ConversationFacts {
            id: r.id,
            created_at: r.created_at as i64,
            first_visitor_message_at: ms(r.first_visitor_message_at),
            first_agent_message_at: ms(r.first_agent_message_at),
            first_closed_at: ms(r.first_closed_at),
            assignee: r.assignee,
            agent_messages: r.agent_messages.unwrap_or(0.0) as u32,
            visitor_messages: r.visitor_messages.unwrap_or(0.0) as u32,
            rating: r.rating.map(|s| s as u8),
            country: r.country,
            source: r
                .utm_source
                .filter(|s| !s.is_empty())
                .or_else(|| r.referrer.as_deref().and_then(host_of)),
        })
        .collect();
    let mut report = reports::build(&tz, &facts, &missed);
    name_agents(ctx, team, &mut report).await?;
    match query.format.as_deref() {
        Some("csv") => csv_response(&report),
        None | Some("json") => ok_json(&report, 200),
        Some(_) => Err(ErrorCode::InvalidRequest.into()),
    }
}

/// Puts each agent's name beside their id.
async fn name_agents(ctx: &Ctx, team: &str, report: &mut Report) -> Result<(), ApiError> {
    from_row! {
        struct Row {
            id: String,
            name: String,
        }
    }
    let rows = db(ctx)?
        .prepare("SELECT id, name FROM agents WHERE team_id = ?1")
        .bind(&[team.into()])
        .rows::<Row>(ctx)
        .await?;
    let names: std::collections::HashMap<String, String> =
        rows.into_iter().map(|r| (r.id, r.name)).collect();
    for figures in &mut report.per_agent {
        figures.name = names.get(&figures.agent).cloned();
    }
    Ok(())
}

/// The report as CSV rows of `section,key,value`, ready for a spreadsheet; agents are keyed
/// by name and id (names need not be unique).
fn csv_response(report: &Report) -> ApiResult {
    let mut out = csv::line(["section", "key", "value"]);
    let mut row =
        |section: &str, key: &str, value: String| out.push_str(&csv::line([section, key, &value]));
    let opt = |v: Option<i64>| v.map_or(String::new(), |x| x.to_string());
    row("summary", "timezone", report.timezone.clone());
    row("summary", "conversations", report.conversations.to_string());
    row("summary", "missed", report.missed.to_string());
    row(
        "first_response_ms",
        "median",
        opt(report.first_response.median_ms),
    );
    row(
        "first_response_ms",
        "p90",
        opt(report.first_response.p90_ms),
    );
    row("resolution_ms", "median", opt(report.resolution.median_ms));
    row("resolution_ms", "p90", opt(report.resolution.p90_ms));
    for (day, n) in &report.per_day {
        row("per_day", day, n.to_string());
    }
    for (hour, n) in report.busiest_hours.iter().enumerate() {
        row("hour", &format!("{hour:02}"), n.to_string());
    }
    for (country, n) in &report.by_country {
        row("country", country, n.to_string());
    }
    for (source, n) in &report.by_source {
        row("source", source, n.to_string());
    }
    for a in &report.per_agent {
        let key = match &a.name {
            Some(name) => format!("{name} ({})", a.agent),
            None => a.agent.clone(),
        };
        row("agent_conversations", &key, a.conversations.to_string());
        row("agent_messages", &key, a.messages.to_string());
        row(
            "agent_first_response_median_ms",
            &key,
            opt(a.first_response.median_ms),
        );
        row("agent_missed", &key, a.missed.to_string());
        row(
            "agent_satisfaction",
            &key,
            a.satisfaction.map_or(String::new(), |s| format!("{s:.2}")),
        );
    }
    row(
        "satisfaction",
        "average",
        report
            .satisfaction
            .average
            .map_or(String::new(), |s| format!("{s:.2}")),
    );
    for (i, n) in report.satisfaction.distribution.iter().enumerate() {
        row("satisfaction", &format!("score_{}", i + 1), n.to_string());
    }
    let headers = Headers::new();
    let set = |k: &str, v: &str| {
        headers
            .set(k, v)
            .map_err(|_| ApiError::from(ErrorCode::Internal))
    };
    set("content-type", "text/csv; charset=utf-8")?;
    set(
        "content-disposition",
        "attachment; filename=\"parley-report.csv\"",
    )?;
    set("cache-control", "no-store")?;
    Ok(Response::ok(out)
        .map_err(|_| ApiError::from(ErrorCode::Internal))?
        .with_headers(headers))
}
