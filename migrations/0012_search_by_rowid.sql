-- The search index keeps each message's rowid as its own, so deleting a message deletes its
-- search row by rowid. Until now the delete trigger matched conversation_id and seq, columns
-- FTS5 does not index: every deleted message read the whole index, and an erasure or the
-- retention purge of a conversation read it once per message. The index is rebuilt once here.
-- This relies on a message keeping its rowid, as it does: messages are inserted and deleted,
-- never rewritten, and backups copy the database file. Should rowids ever move (a database
-- moved through an SQL dump, for which the index has to be dropped first anyway: D1's export
-- refuses FTS5 tables), running this file's statements again rebuilds the index to match; they
-- do not need the index to exist. Until then a search row left at a rowid a new message takes
-- is replaced, never a reason to refuse the message.
DROP TRIGGER IF EXISTS messages_fts_insert;
DROP TRIGGER IF EXISTS messages_fts_delete;
DROP TABLE IF EXISTS messages_fts;

CREATE VIRTUAL TABLE messages_fts USING fts5(
  text,
  conversation_id UNINDEXED,
  seq UNINDEXED,
  tokenize = 'trigram'
);

CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages
WHEN new.kind = 'message' AND json_extract(new.body, '$.text') IS NOT NULL
BEGIN
  INSERT OR REPLACE INTO messages_fts (rowid, text, conversation_id, seq)
  VALUES (new.rowid, json_extract(new.body, '$.text'), new.conversation_id, new.seq);
END;

-- The conversation and seq are checked as well: were rowids ever to move, a deletion would
-- leave a search row behind rather than delete another message's.
CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages
WHEN old.kind = 'message'
BEGIN
  DELETE FROM messages_fts
  WHERE rowid = old.rowid AND conversation_id = old.conversation_id AND seq = old.seq;
END;

INSERT INTO messages_fts (rowid, text, conversation_id, seq)
SELECT rowid, json_extract(body, '$.text'), conversation_id, seq FROM messages
WHERE kind = 'message' AND json_extract(body, '$.text') IS NOT NULL;
