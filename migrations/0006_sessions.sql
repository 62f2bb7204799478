-- Agent sign-in sessions: a token names its session, and a session can be ended (logout, an
-- admin disabling the agent) before the token expires.
CREATE TABLE sessions (
  id          TEXT PRIMARY KEY,
  agent_id    TEXT NOT NULL REFERENCES agents(id),
  team_id     TEXT NOT NULL,
  created_at  INTEGER NOT NULL,
  expires_at  INTEGER NOT NULL,
  ended_at    INTEGER
);
CREATE INDEX sessions_by_agent ON sessions (agent_id);
