-- Routing, presence and the console: departments, capacity, permissions, routing settings,
-- tags, quick replies, the routing history (for missed-conversation reports) and the audit log.

-- JSON object of routing settings (policy, answer timeout, offline behaviour, rules); missing
-- keys take the defaults in parley-core's routing module.
ALTER TABLE sites ADD COLUMN routing TEXT NOT NULL DEFAULT '{}';

-- Most conversations an agent handles at once.
ALTER TABLE agents ADD COLUMN capacity INTEGER NOT NULL DEFAULT 5;
-- JSON array of extra permissions: "view_personal_data", "export". Owners and admins have both.
ALTER TABLE agents ADD COLUMN permissions TEXT NOT NULL DEFAULT '[]';

CREATE TABLE departments (
  id          TEXT PRIMARY KEY,
  team_id     TEXT NOT NULL REFERENCES teams(id),
  name        TEXT NOT NULL,
  created_at  INTEGER NOT NULL,
  UNIQUE (team_id, name)
);

CREATE TABLE agent_departments (
  agent_id       TEXT NOT NULL,
  department_id  TEXT NOT NULL,
  PRIMARY KEY (agent_id, department_id)
);

CREATE TABLE conversation_tags (
  conversation_id  TEXT NOT NULL,
  tag              TEXT NOT NULL,
  PRIMARY KEY (conversation_id, tag)
);

CREATE TABLE quick_replies (
  id          TEXT PRIMARY KEY,
  team_id     TEXT NOT NULL,
  -- NULL for a team reply; the agent's id for a personal one.
  agent_id    TEXT,
  group_name  TEXT NOT NULL DEFAULT '',
  title       TEXT NOT NULL,
  body        TEXT NOT NULL,
  created_at  INTEGER NOT NULL
);
CREATE INDEX quick_replies_by_team ON quick_replies (team_id, group_name, title);

-- What routing did: assigned (routed, claimed, transferred, timeout, agent_offline), queued, missed.
CREATE TABLE routing_events (
  id               INTEGER PRIMARY KEY AUTOINCREMENT,
  site_id          TEXT NOT NULL,
  conversation_id  TEXT NOT NULL,
  agent_id         TEXT,
  kind             TEXT NOT NULL,
  reason           TEXT,
  created_at       INTEGER NOT NULL
);
CREATE INDEX routing_events_by_site ON routing_events (site_id, created_at);

CREATE TABLE audit_log (
  id          INTEGER PRIMARY KEY AUTOINCREMENT,
  team_id     TEXT NOT NULL,
  actor_id    TEXT NOT NULL,
  action      TEXT NOT NULL,
  target      TEXT,
  detail      TEXT NOT NULL DEFAULT '{}',
  created_at  INTEGER NOT NULL
);
CREATE INDEX audit_log_by_team ON audit_log (team_id, created_at);
