//! The export page queries on the real schema (every migration, applied in order to SQLite):
//! their plans walk the export indexes from the cursor with no sort, and paging through them
//! gives exactly the team's rows in the range, in export order.

use std::path::Path;

use parley_core::export::{start_after, Dataset, Keyset};
use rusqlite::types::Value;
use rusqlite::{params, Connection};

const DATASETS: [Dataset; 3] = [Dataset::Messages, Dataset::Conversations, Dataset::Audit];

/// The end of the range when an export is asked for without `to` (as the Worker reads it).
const NO_END: i64 = i64::MAX / 2;

fn migrated() -> Connection {
    let db = Connection::open_in_memory().expect("in-memory database");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("migrations directory")
        .map(|entry| entry.expect("migration entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "sql"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no migrations in {}", dir.display());
    for file in files {
        let sql = std::fs::read_to_string(&file).expect("migration text");
        db.execute_batch(&sql)
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    }
    db
}

fn plan(db: &Connection, dataset: Dataset) -> Vec<String> {
    let mut statement = db
        .prepare(&format!("EXPLAIN QUERY PLAN {}", dataset.page_query()))
        .expect("page query prepares");
    let rows = statement
        .query_map(params![TEAM, "", NO_END, 0, "", -1, 500], |row| {
            row.get::<_, String>(3)
        })
        .expect("plan runs");
    rows.map(|detail| detail.expect("plan row")).collect()
}

/// What the plan of each page query must start with: a SEARCH of its export index whose range
/// begins at the keyset cursor (not at the range's start, and not a scan of the team's rows).
fn expected_outer_loop(dataset: Dataset) -> &'static str {
    match dataset {
        Dataset::Messages => {
            "SEARCH m USING INDEX messages_by_time ((created_at,conversation_id,seq)>(?,?,?) AND created_at<?)"
        }
        Dataset::Conversations => {
            "SEARCH conversations USING INDEX conversations_by_time ((created_at,id)>(?,?) AND created_at<?)"
        }
        // The cursor's id is compared as text, which SQLite does not use for the range: it
        // starts at the cursor's millisecond.
        Dataset::Audit => {
            "SEARCH audit_log USING INDEX audit_log_by_team_time (team_id=? AND created_at>? AND created_at<?)"
        }
    }
}

fn assert_plan_walks_the_export_index(db: &Connection) {
    for dataset in DATASETS {
        let details = plan(db, dataset);
        let shown = details.join("\n");
        assert_eq!(
            details.first().map(String::as_str),
            Some(expected_outer_loop(dataset)),
            "{dataset:?} page plan:\n{shown}"
        );
        assert!(
            !details.iter().any(|d| d.contains("TEMP B-TREE")),
            "{dataset:?} page sorts:\n{shown}"
        );
        if dataset == Dataset::Messages {
            assert!(
                details
                    .iter()
                    .any(|d| d == "SEARCH c USING INDEX sqlite_autoindex_conversations_1 (id=?)"),
                "each message's conversation is found by its key:\n{shown}"
            );
        }
    }
}

#[test]
fn page_queries_walk_the_export_indexes_without_sorting() {
    assert_plan_walks_the_export_index(&migrated());
}

#[test]
fn page_query_plans_hold_with_table_statistics() {
    let db = seeded();
    db.execute_batch("ANALYZE").expect("analyze");
    assert_plan_walks_the_export_index(&db);
}

const TEAM: &str = "team-a";
const OTHER_TEAM: &str = "team-b";
const SITES: [(&str, &str); 3] = [
    ("site-a1", TEAM),
    ("site-a2", TEAM),
    ("site-b1", OTHER_TEAM),
];

/// Two teams, three sites, conversations and messages interleaved in time with many sharing a
/// millisecond, messages left by an erased conversation, and audit entries of both teams whose
/// ids cross 9→10 and 99→100 within one millisecond.
fn seeded() -> Connection {
    let db = migrated();
    for team in [TEAM, OTHER_TEAM] {
        db.execute(
            "INSERT INTO teams (id, name, created_at) VALUES (?1, ?1, 0)",
            [team],
        )
        .expect("team");
    }
    for (site, team) in SITES {
        db.execute(
            "INSERT INTO sites (id, team_id, site_key, name, created_at) VALUES (?1, ?2, ?1, ?1, 0)",
            [site, team],
        )
        .expect("site");
    }
    for i in 0..60_i64 {
        // Ids out of creation order, so the order by id within a millisecond is exercised.
        let id = format!("conv-{:03}", (i * 37) % 101);
        let site = SITES[(i % 3) as usize].0;
        let created_at = 1_000 + i / 4;
        db.execute(
            "INSERT INTO conversations (id, site_id, visitor_id, status, created_at, updated_at, last_seq)
             VALUES (?1, ?2, ?3, 'open', ?4, ?4, ?5)",
            params![id, site, format!("visitor-{i}"), created_at, 3 + i % 5],
        )
        .expect("conversation");
        for seq in 1..=3 + i % 5 {
            insert_message(&db, &id, seq, 1_000 + (i * 7 + seq * 3) % 40);
        }
    }
    for seq in 1..=6 {
        insert_message(&db, "conv-erased", seq, 1_000 + seq * 2);
    }
    for i in 0..150_i64 {
        let team = if i % 3 == 1 { OTHER_TEAM } else { TEAM };
        db.execute(
            "INSERT INTO audit_log (team_id, actor_id, action, target, created_at)
             VALUES (?1, 'agent', 'export', 'messages', ?2)",
            params![team, 1_000 + i / 12],
        )
        .expect("audit entry");
    }
    db
}

fn insert_message(db: &Connection, conversation: &str, seq: i64, created_at: i64) {
    db.execute(
        "INSERT INTO messages (conversation_id, seq, kind, author_id, author_role, body, created_at)
         VALUES (?1, ?2, 'message', 'visitor', 'visitor', '{}', ?3)",
        params![conversation, seq, created_at],
    )
    .expect("message");
}

/// The export's contract stated plainly, as one query: the team's rows (of `site` if not
/// empty) with `from <= created_at < to`, in export order, with the page query's columns.
fn reference_query(dataset: Dataset) -> &'static str {
    match dataset {
        Dataset::Messages => {
            "SELECT m.conversation_id, m.seq, m.created_at, c.site_id, c.visitor_id, m.kind, m.author_role,
                    m.author_id, m.author_name, m.body
             FROM messages m JOIN conversations c ON c.id = m.conversation_id JOIN sites s ON s.id = c.site_id
             WHERE s.team_id = ?1 AND (?2 = '' OR c.site_id = ?2) AND m.created_at >= ?3 AND m.created_at < ?4
             ORDER BY m.created_at, m.conversation_id, m.seq"
        }
        Dataset::Conversations => {
            "SELECT c.id, c.site_id, c.visitor_id, c.status, c.assignee_id, c.created_at, c.updated_at, c.last_seq,
                    c.last_message_at
             FROM conversations c JOIN sites s ON s.id = c.site_id
             WHERE s.team_id = ?1 AND (?2 = '' OR c.site_id = ?2) AND c.created_at >= ?3 AND c.created_at < ?4
             ORDER BY c.created_at, c.id"
        }
        Dataset::Audit => {
            "SELECT id, created_at, actor_id, action, target, detail FROM audit_log
             WHERE team_id = ?1 AND ?2 = '' AND created_at >= ?3 AND created_at < ?4
             ORDER BY created_at, CAST(id AS TEXT)"
        }
    }
}

type Row = Vec<Value>;

fn read_rows(statement: &mut rusqlite::Statement, bound: impl rusqlite::Params) -> Vec<Row> {
    let width = statement.column_count();
    statement
        .query_map(bound, |row| {
            (0..width).map(|i| row.get::<_, Value>(i)).collect()
        })
        .expect("query runs")
        .map(|row| row.expect("row"))
        .collect()
}

fn integer(value: &Value) -> i64 {
    match value {
        Value::Integer(n) => *n,
        other => panic!("expected an integer, got {other:?}"),
    }
}

fn key_text(value: &Value) -> String {
    match value {
        Value::Text(text) => text.clone(),
        Value::Integer(n) => n.to_string(),
        other => panic!("expected a key, got {other:?}"),
    }
}

/// The cursor after a row, taken from the same columns the Worker takes it from.
fn keyset_after(dataset: Dataset, row: &Row) -> Keyset {
    match dataset {
        Dataset::Messages => (integer(&row[2]), key_text(&row[0]), integer(&row[1])),
        Dataset::Conversations => (integer(&row[5]), key_text(&row[0]), 0),
        Dataset::Audit => (integer(&row[1]), key_text(&row[0]), 0),
    }
}

/// Every page of an export, as the Worker reads them, until a page comes back short.
fn paged(
    db: &Connection,
    dataset: Dataset,
    site: &str,
    (from, to): (i64, i64),
    page_rows: i64,
) -> Vec<Row> {
    let mut statement = db.prepare(dataset.page_query()).expect("page query");
    let mut after = start_after(from);
    let mut all = Vec::new();
    loop {
        let page = read_rows(
            &mut statement,
            params![TEAM, site, to, after.0, after.1, after.2, page_rows],
        );
        if let Some(last) = page.last() {
            after = keyset_after(dataset, last);
        }
        let short = (page.len() as i64) < page_rows;
        all.extend(page);
        if short {
            return all;
        }
    }
}

#[test]
fn paging_gives_exactly_the_teams_rows_in_the_range_in_order() {
    let db = seeded();
    let ranges = [(0, NO_END), (1_005, 1_020), (1_010, 1_011), (2_000, NO_END)];
    for dataset in DATASETS {
        let sites: &[&str] = match dataset {
            Dataset::Audit => &["", "site-a1"],
            _ => &["", "site-a1", "site-a2", "site-b1", "site-unknown"],
        };
        let mut reference = db.prepare(reference_query(dataset)).expect("reference");
        for &site in sites {
            for range in ranges {
                let expected = read_rows(&mut reference, params![TEAM, site, range.0, range.1]);
                for page_rows in [1, 7, 500] {
                    let got = paged(&db, dataset, site, range, page_rows);
                    if got != expected {
                        let first = got
                            .iter()
                            .zip(&expected)
                            .position(|(a, b)| a != b)
                            .unwrap_or(got.len().min(expected.len()));
                        panic!(
                            "{dataset:?}, site {site:?}, range {range:?}, pages of {page_rows}: \
                             {} rows, expected {}; first difference at row {first}: {:?}, expected {:?}",
                            got.len(),
                            expected.len(),
                            got.get(first),
                            expected.get(first)
                        );
                    }
                }
            }
        }
    }
    // The seed is what the comparison relies on: the team has rows of each kind, on both its
    // sites, sharing milliseconds, and the other team has rows in the same range.
    let count = |sql: &str| -> i64 { db.query_row(sql, [], |row| row.get(0)).expect("count") };
    assert!(count("SELECT count(*) FROM messages m JOIN conversations c ON c.id = m.conversation_id WHERE c.site_id = 'site-b1'") > 50);
    assert!(count("SELECT count(*) FROM messages m JOIN conversations c ON c.id = m.conversation_id WHERE c.site_id = 'site-a2'") > 50);
    assert!(
        count("SELECT max(n) FROM (SELECT count(*) AS n FROM messages GROUP BY created_at)") > 3
    );
    assert!(count("SELECT count(*) FROM audit_log WHERE team_id = 'team-b'") > 20);
    assert_eq!(
        count("SELECT count(*) FROM audit_log WHERE team_id = 'team-a' AND created_at = 1000 AND id IN (9, 10)"),
        2
    );
}
