-- Erasing a conversation deletes its routing history: found by conversation, not by a scan.
CREATE INDEX routing_events_by_conversation ON routing_events (conversation_id);
-- The retention purge removes visitors not seen within a site's retention period: found by
-- site and last visit, not by a scan of every visitor.
CREATE INDEX visitors_by_site_seen ON visitors (site_id, last_seen_at);
