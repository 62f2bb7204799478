-- Webhooks: per-site targets and the events they receive. Deliveries and their log live in
-- the site's Webhook Durable Object; this table is the configuration.
CREATE TABLE webhooks (
  id               TEXT PRIMARY KEY,
  site_id          TEXT NOT NULL REFERENCES sites(id),
  url              TEXT NOT NULL,
  -- JSON array of event names (see parley-core's webhook::EVENTS).
  events           TEXT NOT NULL DEFAULT '[]',
  -- HMAC-SHA256 key of the Parley-Signature header; shown to the admin once.
  secret           TEXT NOT NULL,
  enabled          INTEGER NOT NULL DEFAULT 1,
  -- Consecutive failed deliveries; reaching the limit switches the webhook off.
  failures         INTEGER NOT NULL DEFAULT 0,
  disabled_reason  TEXT,
  created_at       INTEGER NOT NULL
);
CREATE INDEX webhooks_by_site ON webhooks (site_id);
