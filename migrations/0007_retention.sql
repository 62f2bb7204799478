-- Data retention per site: conversations older than this many days (by last activity) are
-- purged by the scheduled job; NULL keeps everything.
ALTER TABLE sites ADD COLUMN retention_days INTEGER;
