-- API keys for server-to-server use. Only the SHA-256 of a key's secret is stored; the whole
-- key is shown once, when it is made. Revoked keys stay listed (who made them, when, last use).
CREATE TABLE api_keys (
  id            TEXT PRIMARY KEY,
  team_id       TEXT NOT NULL,
  name          TEXT NOT NULL,
  scopes        TEXT NOT NULL,
  secret_hash   TEXT NOT NULL,
  created_by    TEXT NOT NULL,
  created_at    INTEGER NOT NULL,
  last_used_at  INTEGER,
  revoked_at    INTEGER
);
CREATE INDEX api_keys_by_team ON api_keys (team_id, created_at);
