-- Parley schema v1: configuration (teams, sites, agents) and the queryable mirror of
-- conversations and their events. The Conversation Durable Object's own log is the
-- source of truth for a conversation; these tables are written from its outbox.

CREATE TABLE teams (
  id          TEXT PRIMARY KEY,
  name        TEXT NOT NULL,
  created_at  INTEGER NOT NULL
);

CREATE TABLE sites (
  id               TEXT PRIMARY KEY,
  team_id          TEXT NOT NULL REFERENCES teams(id),
  site_key         TEXT NOT NULL UNIQUE,
  name             TEXT NOT NULL,
  -- JSON array of exact origins ("https://shop.example") allowed to embed the widget.
  allowed_origins  TEXT NOT NULL DEFAULT '[]',
  created_at       INTEGER NOT NULL
);

CREATE TABLE agents (
  id                   TEXT PRIMARY KEY,
  team_id              TEXT NOT NULL REFERENCES teams(id),
  email                TEXT NOT NULL UNIQUE COLLATE NOCASE,
  name                 TEXT NOT NULL,
  role                 TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'agent')),
  -- PBKDF2-SHA256: base64 hash and salt, and the iteration count used.
  password_hash        TEXT NOT NULL,
  password_salt        TEXT NOT NULL,
  password_iterations  INTEGER NOT NULL,
  disabled             INTEGER NOT NULL DEFAULT 0,
  created_at           INTEGER NOT NULL
);

CREATE TABLE visitors (
  id             TEXT PRIMARY KEY,
  site_id        TEXT NOT NULL REFERENCES sites(id),
  created_at     INTEGER NOT NULL,
  last_seen_at   INTEGER NOT NULL
);

CREATE TABLE conversations (
  id               TEXT PRIMARY KEY,
  site_id          TEXT NOT NULL,
  visitor_id       TEXT NOT NULL,
  status           TEXT NOT NULL CHECK (status IN ('open', 'closed')),
  assignee_id      TEXT,
  created_at       INTEGER NOT NULL,
  updated_at       INTEGER NOT NULL,
  last_seq         INTEGER NOT NULL DEFAULT 0,
  last_message_at  INTEGER
);
CREATE INDEX conversations_by_site ON conversations (site_id, updated_at DESC, id);
CREATE INDEX conversations_by_visitor ON conversations (visitor_id, updated_at DESC, id);

-- One row per event of a conversation's log; (conversation_id, seq) makes the mirror idempotent.
CREATE TABLE messages (
  conversation_id  TEXT NOT NULL,
  seq              INTEGER NOT NULL,
  kind             TEXT NOT NULL,
  author_id        TEXT NOT NULL,
  author_role      TEXT NOT NULL,
  author_name      TEXT,
  client_msg_id    TEXT,
  body             TEXT NOT NULL,
  created_at       INTEGER NOT NULL,
  PRIMARY KEY (conversation_id, seq)
);
