-- Full-text search over message text. The trigram tokenizer matches any three or more
-- consecutive characters, so it works for languages without spaces (Chinese, Japanese) as
-- well as for word fragments; shorter queries fall back to a scan (see src/search.rs).
CREATE VIRTUAL TABLE messages_fts USING fts5(
  text,
  conversation_id UNINDEXED,
  seq UNINDEXED,
  tokenize = 'trigram'
);

CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages
WHEN new.kind = 'message' AND json_extract(new.body, '$.text') IS NOT NULL
BEGIN
  INSERT INTO messages_fts (text, conversation_id, seq)
  VALUES (json_extract(new.body, '$.text'), new.conversation_id, new.seq);
END;

CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages
BEGIN
  DELETE FROM messages_fts WHERE conversation_id = old.conversation_id AND seq = old.seq;
END;

-- Messages mirrored before this migration.
INSERT INTO messages_fts (text, conversation_id, seq)
SELECT json_extract(body, '$.text'), conversation_id, seq FROM messages
WHERE kind = 'message' AND json_extract(body, '$.text') IS NOT NULL;
