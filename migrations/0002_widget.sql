-- Widget configuration per site, visitor identity and context, page trail.

-- JSON object of widget settings (appearance, welcome, pre-chat form, offline form);
-- missing keys take the defaults in parley-core's site_settings module.
ALTER TABLE sites ADD COLUMN settings TEXT NOT NULL DEFAULT '{}';
-- HMAC-SHA256 key the site's own server uses to sign visitor ids for identify(); NULL = off.
ALTER TABLE sites ADD COLUMN identity_secret TEXT;

ALTER TABLE visitors ADD COLUMN external_id TEXT;
ALTER TABLE visitors ADD COLUMN name TEXT;
ALTER TABLE visitors ADD COLUMN email TEXT;
ALTER TABLE visitors ADD COLUMN identity_verified INTEGER NOT NULL DEFAULT 0;
-- JSON object: free-form attributes set through the widget's setAttributes().
ALTER TABLE visitors ADD COLUMN attributes TEXT NOT NULL DEFAULT '{}';
-- JSON object: the latest context the widget reported (language, time zone, device, UTM...).
ALTER TABLE visitors ADD COLUMN context TEXT NOT NULL DEFAULT '{}';
ALTER TABLE visitors ADD COLUMN country TEXT;
ALTER TABLE visitors ADD COLUMN region TEXT;
ALTER TABLE visitors ADD COLUMN city TEXT;

CREATE TABLE page_views (
  id          INTEGER PRIMARY KEY AUTOINCREMENT,
  visitor_id  TEXT NOT NULL,
  site_id     TEXT NOT NULL,
  url         TEXT NOT NULL,
  title       TEXT,
  referrer    TEXT,
  created_at  INTEGER NOT NULL
);
CREATE INDEX page_views_by_visitor ON page_views (visitor_id, created_at);
