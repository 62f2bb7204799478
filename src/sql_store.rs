//! The conversation log in the Durable Object's own SQLite: the [`Store`] port of the engine.
//! Each write is a single statement, so an event, its dedupe key and its place in the mirror
//! queue (`seq > mirrored_seq`) become durable together.

use std::collections::BTreeMap;

use parley_core::mirror::EventRow;
use parley_core::{Event, Meta, Status, Store};
use worker::{SqlStorage, SqlStorageValue};

use crate::row::{from_row, FromRow};
use crate::sql_text;

from_row!(EventRow {
    seq,
    kind,
    author_id,
    author_role,
    author_name,
    client_msg_id,
    body,
    at,
});

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS conversation (
  id TEXT PRIMARY KEY, site TEXT NOT NULL, team TEXT NOT NULL, visitor TEXT NOT NULL,
  epoch TEXT NOT NULL, created_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS events (
  seq INTEGER PRIMARY KEY, kind TEXT NOT NULL, body TEXT NOT NULL,
  author_id TEXT NOT NULL, author_role TEXT NOT NULL, author_name TEXT,
  client_msg_id TEXT, at INTEGER NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS events_dedupe ON events (author_id, client_msg_id)
  WHERE client_msg_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_kind ON events (kind, seq);
CREATE TABLE IF NOT EXISTS reads (participant TEXT PRIMARY KEY, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS mirror (
  id INTEGER PRIMARY KEY CHECK (id = 1), mirrored_seq INTEGER NOT NULL, failures INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS files (
  id TEXT PRIMARY KEY, r2_key TEXT NOT NULL, name TEXT NOT NULL, mime TEXT NOT NULL,
  size INTEGER NOT NULL, image INTEGER NOT NULL, uploader TEXT NOT NULL, created_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS settings (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS restore_state (id INTEGER PRIMARY KEY CHECK (id = 1), v TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS webhook_state (id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL);
";

/// Setting: [`Meta::assigned_since`], in Unix ms.
const ASSIGNED_SINCE: &str = "assigned_since";

from_row! {
    /// An uploaded file; it belongs to the log once an event of kind `file` names it.
    #[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
    pub struct FileRow {
        pub id: String,
        pub r2_key: String,
        pub name: String,
        pub mime: String,
        pub size: u64,
        pub image: i64,
        pub uploader: String,
        pub created_at: i64,
    }
}

impl FileRow {
    pub fn file_ref(&self) -> parley_core::FileRef {
        parley_core::FileRef {
            id: self.id.clone(),
            name: self.name.clone(),
            mime: self.mime.clone(),
            size: self.size,
            image: self.image != 0,
        }
    }
}

/// A handle on the object's storage; clones share what they remember (the object's tasks may
/// each hold one across awaits).
#[derive(Clone)]
pub struct SqlStore {
    sql: SqlStorage,
    /// Whether this instance has made sure of its tables (once, before its first need).
    schema_ready: std::rc::Rc<std::cell::Cell<bool>>,
    /// Settings read or written by this instance: the object is their only writer.
    settings: std::rc::Rc<std::cell::RefCell<std::collections::HashMap<String, Option<String>>>>,
    /// The mirror's and the webhooks' watermarks as stored, once read or written (every
    /// message and mirror run consults them; the object is their only writer).
    mirror: std::rc::Rc<std::cell::Cell<Option<MirrorRow>>>,
    webhook: std::rc::Rc<std::cell::Cell<Option<u64>>>,
}

#[derive(Debug)]
pub struct SqlError(pub String);

impl std::fmt::Display for SqlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sqlite: {}", self.0)
    }
}

impl From<worker::Error> for SqlError {
    fn from(e: worker::Error) -> Self {
        SqlError(e.to_string())
    }
}

from_row! {
    struct ConversationRow {
        id: String,
        site: String,
        team: String,
        visitor: String,
        epoch: String,
        created_at: i64,
    }
}

from_row! {
    struct SeqRow {
        seq: Option<u64>,
    }
}

from_row! {
    struct KindRow {
        kind: String,
    }
}

from_row! {
    struct BodyRow {
        body: String,
    }
}

from_row! {
    struct ReadRow {
        participant: String,
        seq: u64,
    }
}

from_row! {
    #[derive(Default, Clone, Copy)]
    pub struct MirrorRow {
        pub mirrored_seq: u64,
        pub failures: u32,
    }
}

fn int(v: u64) -> SqlStorageValue {
    SqlStorageValue::Integer(v as i64)
}

impl SqlStore {
    /// Opens the store without writing: an object for an id that was never created (a probe,
    /// a typo) stays empty and costs no storage.
    pub fn open(sql: SqlStorage) -> Result<SqlStore, SqlError> {
        Ok(SqlStore {
            sql,
            schema_ready: Default::default(),
            settings: Default::default(),
            mirror: Default::default(),
            webhook: Default::default(),
        })
    }

    /// Creates the tables if this instance has not yet (the first write of a new object, or
    /// the first use after a wake-up).
    fn ensure_schema(&self) -> Result<(), SqlError> {
        if !self.schema_ready.get() {
            self.exec(SCHEMA, vec![])?;
            self.schema_ready.set(true);
        }
        Ok(())
    }

    fn exists(&self) -> Result<bool, SqlError> {
        from_row! {
            struct Count {
                n: u32,
            }
        }
        Ok(self
            .rows::<Count>(
                "SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'table' AND name = 'conversation'",
                vec![],
            )?
            .first()
            .is_some_and(|c| c.n > 0))
    }

    /// Runs a statement whose rows are not read.
    fn exec(&self, query: &str, bindings: Vec<SqlStorageValue>) -> Result<(), SqlError> {
        sql_text::exec(&self.sql, query, bindings)?;
        Ok(())
    }

    fn rows<T: FromRow>(
        &self,
        query: &str,
        bindings: Vec<SqlStorageValue>,
    ) -> Result<Vec<T>, SqlError> {
        Ok(sql_text::rows(&self.sql, query, bindings)?)
    }

    fn events(&self, query: &str, bindings: Vec<SqlStorageValue>) -> Result<Vec<Event>, SqlError> {
        self.rows::<EventRow>(query, bindings)?
            .into_iter()
            .map(|row| row.into_event().map_err(|e| SqlError(e.to_string())))
            .collect()
    }

    pub fn mirror_state(&self) -> Result<MirrorRow, SqlError> {
        if let Some(known) = self.mirror.get() {
            return Ok(known);
        }
        let stored = self
            .rows::<MirrorRow>(
                "SELECT mirrored_seq, failures FROM mirror WHERE id = 1",
                vec![],
            )?
            .into_iter()
            .next()
            .unwrap_or(MirrorRow {
                mirrored_seq: 0,
                failures: 0,
            });
        self.mirror.set(Some(stored));
        Ok(stored)
    }

    /// Records an upload. Idempotent by file id: registering the same file again (the Worker
    /// asks again when an answer was lost) keeps the first row.
    pub fn insert_file(&self, file: &FileRow) -> Result<(), SqlError> {
        self.ensure_schema()?;
        self.exec(
            "INSERT INTO files (id, r2_key, name, mime, size, image, uploader, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
            vec![
                file.id.as_str().into(),
                file.r2_key.as_str().into(),
                file.name.as_str().into(),
                file.mime.as_str().into(),
                int(file.size),
                file.image.into(),
                file.uploader.as_str().into(),
                file.created_at.into(),
            ],
        )?;
        Ok(())
    }

    pub fn file(&self, id: &str) -> Result<Option<FileRow>, SqlError> {
        self.ensure_schema()?;
        Ok(self
            .rows::<FileRow>("SELECT * FROM files WHERE id = ?", vec![id.into()])?
            .into_iter()
            .next())
    }

    /// Whether an event of the log names the file.
    pub fn file_posted(&self, id: &str) -> Result<bool, SqlError> {
        Ok(!self
            .rows::<SeqRow>(
                "SELECT seq FROM events WHERE kind = 'file' AND json_extract(body, '$.file.id') = ? LIMIT 1",
                vec![id.into()],
            )?
            .is_empty())
    }

    /// Uploads older than `before` that no event names: never sent, to be deleted.
    pub fn abandoned_files(&self, before: i64) -> Result<Vec<FileRow>, SqlError> {
        self.ensure_schema()?;
        self.rows::<FileRow>(
            "SELECT * FROM files WHERE created_at < ? AND NOT EXISTS (SELECT 1 FROM events
               WHERE kind = 'file' AND json_extract(body, '$.file.id') = files.id) LIMIT 100",
            vec![before.into()],
        )
    }

    /// A small setting of this conversation (e.g. the visitor's language).
    pub fn setting(&self, key: &str) -> Result<Option<String>, SqlError> {
        from_row! {
            struct Row {
                v: String,
            }
        }
        if let Some(known) = self.settings.borrow().get(key) {
            return Ok(known.clone());
        }
        self.ensure_schema()?;
        let value = self
            .rows::<Row>("SELECT v FROM settings WHERE k = ?", vec![key.into()])?
            .into_iter()
            .next()
            .map(|r| r.v);
        self.settings
            .borrow_mut()
            .insert(key.to_string(), value.clone());
        Ok(value)
    }

    pub fn set_setting(&self, key: &str, value: &str) -> Result<(), SqlError> {
        self.ensure_schema()?;
        self.exec("INSERT INTO settings (k, v) VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v",
            vec![key.into(), value.into()],
        )?;
        self.settings
            .borrow_mut()
            .insert(key.to_string(), Some(value.to_string()));
        Ok(())
    }

    /// The restore this conversation last started an epoch for.
    pub fn restore_marker(&self) -> Result<Option<String>, SqlError> {
        from_row! {
            struct Row {
                v: String,
            }
        }
        self.ensure_schema()?;
        Ok(self
            .rows::<Row>("SELECT v FROM restore_state WHERE id = 1", vec![])?
            .into_iter()
            .next()
            .map(|r| r.v))
    }

    /// Starts a new epoch after a restore (one write: the epoch and the restore it answers).
    pub fn rotate_epoch(&self, epoch: &str, restore_id: &str) -> Result<(), SqlError> {
        // Both statements run in one turn of the object, so they commit together.
        self.exec("UPDATE conversation SET epoch = ?", vec![epoch.into()])?;
        self.exec("INSERT INTO restore_state (id, v) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET v = excluded.v",
            vec![restore_id.into()],
        )?;
        Ok(())
    }

    /// How far the log has been handed to the site's webhooks.
    pub fn webhook_seq(&self) -> Result<u64, SqlError> {
        if let Some(known) = self.webhook.get() {
            return Ok(known);
        }
        self.ensure_schema()?;
        let stored = self
            .rows::<SeqRow>("SELECT seq FROM webhook_state WHERE id = 1", vec![])?
            .into_iter()
            .next()
            .and_then(|r| r.seq)
            .unwrap_or(0);
        self.webhook.set(Some(stored));
        Ok(stored)
    }

    pub fn set_webhook_seq(&self, seq: u64) -> Result<(), SqlError> {
        self.ensure_schema()?;
        self.exec("INSERT INTO webhook_state (id, seq) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET seq = excluded.seq",
            vec![int(seq)],
        )?;
        self.webhook.set(Some(seq));
        Ok(())
    }

    /// When the oldest upload still waiting to be posted was made.
    pub fn oldest_unposted_file(&self) -> Result<Option<i64>, SqlError> {
        from_row! {
            struct Row {
                at: Option<i64>,
            }
        }
        self.ensure_schema()?;
        Ok(self
            .rows::<Row>(
                "SELECT MIN(created_at) AS at FROM files WHERE NOT EXISTS (SELECT 1 FROM events
                   WHERE kind = 'file' AND json_extract(body, '$.file.id') = files.id)",
                vec![],
            )?
            .into_iter()
            .next()
            .and_then(|r| r.at))
    }

    pub fn delete_file(&self, id: &str) -> Result<(), SqlError> {
        self.exec("DELETE FROM files WHERE id = ?", vec![id.into()])?;
        Ok(())
    }

    pub fn set_mirror_state(&self, mirrored_seq: u64, failures: u32) -> Result<(), SqlError> {
        self.exec(
            "INSERT INTO mirror (id, mirrored_seq, failures) VALUES (1, ?, ?)
             ON CONFLICT (id) DO UPDATE SET mirrored_seq = excluded.mirrored_seq,
             failures = excluded.failures",
            vec![int(mirrored_seq), int(u64::from(failures))],
        )?;
        self.mirror.set(Some(MirrorRow {
            mirrored_seq,
            failures,
        }));
        Ok(())
    }
}

impl Store for SqlStore {
    type Error = SqlError;

    fn load_meta(&self) -> Result<Option<Meta>, SqlError> {
        if !self.exists()? {
            return Ok(None);
        }
        let Some(row) = self
            .rows::<ConversationRow>(
                "SELECT id, site, team, visitor, epoch, created_at FROM conversation LIMIT 1",
                vec![],
            )?
            .into_iter()
            .next()
        else {
            return Ok(None);
        };
        let head = self
            .rows::<SeqRow>("SELECT MAX(seq) AS seq FROM events", vec![])?
            .into_iter()
            .next()
            .and_then(|r| r.seq)
            .unwrap_or(0);
        let status = match self
            .rows::<KindRow>(
                "SELECT kind FROM events WHERE kind IN ('closed', 'reopened') ORDER BY seq DESC LIMIT 1",
                vec![],
            )?
            .first()
        {
            Some(row) if row.kind == "closed" => Status::Closed,
            _ => Status::Open,
        };
        let assignee = self
            .rows::<BodyRow>(
                "SELECT body FROM events WHERE kind = 'assigned' ORDER BY seq DESC LIMIT 1",
                vec![],
            )?
            .into_iter()
            .next()
            .and_then(|row| parley_core::json::from_str::<serde_json::Value>(&row.body).ok())
            .and_then(|body| body["agent"]["id"].as_str().map(str::to_string));
        // Not kept before stale assignments were told apart: none, as if never assigned.
        let assigned_since = self
            .setting(ASSIGNED_SINCE)?
            .and_then(|v| v.parse::<i64>().ok());
        Ok(Some(Meta {
            id: row.id,
            site: row.site,
            team: row.team,
            visitor: row.visitor,
            epoch: row.epoch,
            created_at: row.created_at,
            status,
            assignee,
            head,
            assigned_since,
        }))
    }

    fn create(&mut self, meta: &Meta, first: &Event) -> Result<(), SqlError> {
        self.ensure_schema()?;
        self.exec("INSERT INTO conversation (id, site, team, visitor, epoch, created_at) VALUES (?, ?, ?, ?, ?, ?)",
            vec![
                meta.id.as_str().into(),
                meta.site.as_str().into(),
                meta.team.as_str().into(),
                meta.visitor.as_str().into(),
                meta.epoch.as_str().into(),
                meta.created_at.into(),
            ],
        )?;
        self.append(std::slice::from_ref(first))
    }

    fn append(&mut self, events: &[Event]) -> Result<(), SqlError> {
        if events.is_empty() {
            return Ok(());
        }
        // One INSERT for all rows (SQLite applies a statement atomically), with the rows as one
        // JSON text in one parameter: one string handed to the runtime, not six per event.
        // The row is the one D1 gets (`EventRow::of`), in this table's column order.
        let rows = events
            .iter()
            .map(|event| {
                let row = EventRow::of(event);
                serde_json::to_string(&(
                    row.seq,
                    row.kind,
                    row.body,
                    row.author_id,
                    row.author_role,
                    row.author_name,
                    row.client_msg_id,
                    row.at,
                ))
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| SqlError(e.to_string()))?;
        self.exec(
            "INSERT INTO events (seq, kind, body, author_id, author_role, author_name, client_msg_id, at)
             SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5,
                    value ->> 6, value ->> 7
             FROM json_each(?) WHERE true ORDER BY key",
            vec![format!("[{}]", rows.join(",")).into()],
        )
    }

    fn seq_for_client_msg(
        &self,
        author: &str,
        client_msg_id: &str,
    ) -> Result<Option<u64>, SqlError> {
        Ok(self
            .rows::<SeqRow>(
                "SELECT seq FROM events WHERE author_id = ? AND client_msg_id = ?",
                vec![author.into(), client_msg_id.into()],
            )?
            .into_iter()
            .next()
            .and_then(|r| r.seq))
    }

    fn events_after(&self, after: u64, limit: u32) -> Result<Vec<Event>, SqlError> {
        self.events(
            "SELECT * FROM events WHERE seq > ? ORDER BY seq ASC LIMIT ?",
            vec![int(after), int(u64::from(limit))],
        )
    }

    fn events_before(&self, before: u64, limit: u32) -> Result<Vec<Event>, SqlError> {
        let mut events = self.events(
            "SELECT * FROM events WHERE seq < ? ORDER BY seq DESC LIMIT ?",
            vec![int(before), int(u64::from(limit))],
        )?;
        events.reverse();
        Ok(events)
    }

    fn reads(&self) -> Result<BTreeMap<String, u64>, SqlError> {
        Ok(self
            .rows::<ReadRow>("SELECT participant, seq FROM reads", vec![])?
            .into_iter()
            .map(|r| (r.participant, r.seq))
            .collect())
    }

    fn save_read(&mut self, participant: &str, seq: u64) -> Result<(), SqlError> {
        self.exec(
            "INSERT INTO reads (participant, seq) VALUES (?, ?)
             ON CONFLICT (participant) DO UPDATE SET seq = MAX(seq, excluded.seq)",
            vec![participant.into(), int(seq)],
        )?;
        Ok(())
    }

    fn save_assigned_since(&mut self, since: i64) -> Result<(), SqlError> {
        self.set_setting(ASSIGNED_SINCE, &since.to_string())
    }

    fn rating_since_close(&self) -> Result<Option<Event>, SqlError> {
        // Both lookups run on the (kind, seq) index.
        Ok(self
            .events(
                "SELECT * FROM events WHERE kind = 'rated'
                   AND seq > (SELECT COALESCE(MAX(seq), 0) FROM events WHERE kind = 'closed')
                 ORDER BY seq DESC LIMIT 1",
                vec![],
            )?
            .pop())
    }
}
