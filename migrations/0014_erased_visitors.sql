-- Visitors erased on request, kept as long as a token of theirs may still be valid: a returning
-- token of an erased visitor gets a new visitor id, and writes under the old one are refused,
-- so the erased identity does not come back.
CREATE TABLE erased_visitors (
  visitor_id  TEXT PRIMARY KEY,
  erased_at   INTEGER NOT NULL
);
