-- Automations per site: away reply, keyword replies, auto-close of idle conversations,
-- proactive invitations (see parley-core's automation module for the fields).
ALTER TABLE sites ADD COLUMN automation TEXT NOT NULL DEFAULT '{}';
