//! Exports: the data sets a team can export, their columns, and the query that reads one page of
//! each from D1. Pages follow a keyset cursor, `(created_at, key, seq)` of the last row sent, so
//! each page reads on from where the previous one stopped.
//!
//! Each page query walks an index in export order (migration 0017) starting at its cursor and
//! stops after the page: SQLite neither sorts nor reads the rows of earlier pages again. The
//! queries name their index and, for messages, the join order (`CROSS JOIN` keeps messages the
//! outer loop), because without that SQLite drives the query by the team's sites and sorts all
//! their rows on every page. Messages and conversations carry no team, so their pages pass over
//! other teams' rows of the same time, each once per export. `core/tests/export_queries.rs`
//! checks the plans on the migrated schema.

/// The keyset cursor: a row's `created_at`, its key as text (conversation id, or the audit
/// entry's id) and its `seq` (0 for data sets without one). Rows come in this order.
pub type Keyset = (i64, String, i64);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dataset {
    Messages,
    Conversations,
    Audit,
}

impl Dataset {
    pub fn parse(name: &str) -> Option<Dataset> {
        match name {
            "messages" => Some(Dataset::Messages),
            "conversations" => Some(Dataset::Conversations),
            "audit" => Some(Dataset::Audit),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Dataset::Messages => "messages",
            Dataset::Conversations => "conversations",
            Dataset::Audit => "audit",
        }
    }

    /// The columns of the file, in order.
    pub fn header(self) -> &'static [&'static str] {
        match self {
            Dataset::Messages => &[
                "conversation_id",
                "seq",
                "created_at",
                "site_id",
                "visitor_id",
                "kind",
                "author_role",
                "author_id",
                "author_name",
                "text",
            ],
            Dataset::Conversations => &[
                "id",
                "site_id",
                "visitor_id",
                "status",
                "assignee_id",
                "created_at",
                "updated_at",
                "last_seq",
                "last_message_at",
            ],
            Dataset::Audit => &["id", "created_at", "actor_id", "action", "target", "detail"],
        }
    }

    /// The page query: the team's rows created before `?3`, after the cursor `(?4, ?5, ?6)`, in
    /// cursor order, at most `?7` of them. `?1` is the team, `?2` a site of it or `''` for all
    /// (the audit log is the team's: only `''` finds entries).
    ///
    /// There is no separate lower bound on `created_at`: SQLite would start its index range
    /// there and pass over every earlier page's rows again. The range's start is the first
    /// cursor, [`start_after`].
    pub fn page_query(self) -> &'static str {
        match self {
            Dataset::Messages => {
                "SELECT m.conversation_id, m.seq, m.created_at, c.site_id, c.visitor_id, m.kind, m.author_role,
                        m.author_id, m.author_name, m.body
                 FROM messages m INDEXED BY messages_by_time CROSS JOIN conversations c ON c.id = m.conversation_id
                 WHERE (m.created_at, m.conversation_id, m.seq) > (?4, ?5, ?6) AND m.created_at < ?3
                   AND c.site_id IN (SELECT id FROM sites WHERE team_id = ?1) AND (?2 = '' OR c.site_id = ?2)
                 ORDER BY m.created_at, m.conversation_id, m.seq LIMIT ?7"
            }
            Dataset::Conversations => {
                "SELECT id, site_id, visitor_id, status, assignee_id, created_at, updated_at, last_seq, last_message_at
                 FROM conversations INDEXED BY conversations_by_time
                 WHERE (created_at, id, 0) > (?4, ?5, ?6) AND created_at < ?3
                   AND site_id IN (SELECT id FROM sites WHERE team_id = ?1) AND (?2 = '' OR site_id = ?2)
                 ORDER BY created_at, id LIMIT ?7"
            }
            Dataset::Audit => {
                "SELECT id, created_at, actor_id, action, target, detail
                 FROM audit_log INDEXED BY audit_log_by_team_time
                 WHERE team_id = ?1 AND ?2 = '' AND (created_at, CAST(id AS TEXT), 0) > (?4, ?5, ?6)
                   AND created_at < ?3
                 ORDER BY created_at, CAST(id AS TEXT) LIMIT ?7"
            }
        }
    }
}

/// The cursor an export from `from` (inclusive) starts after: every row created at `from` or
/// later sorts after it, as ids are never empty and `seq` is never negative.
pub fn start_after(from: i64) -> Keyset {
    (from, String::new(), -1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_read_back() {
        for dataset in [Dataset::Messages, Dataset::Conversations, Dataset::Audit] {
            assert_eq!(Dataset::parse(dataset.name()), Some(dataset));
        }
        assert_eq!(Dataset::parse("visitors"), None);
    }
}
