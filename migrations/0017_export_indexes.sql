-- Export pages of messages walk this in order from their cursor, not sort all the team's messages.
CREATE INDEX messages_by_time ON messages (created_at, conversation_id, seq);
-- Export pages of conversations walk this in order from their cursor, not sort all the team's.
CREATE INDEX conversations_by_time ON conversations (created_at, id);
-- Export pages of the audit log read the team's entries in export order (ids as text): no sort.
CREATE INDEX audit_log_by_team_time ON audit_log (team_id, created_at, CAST(id AS TEXT));
