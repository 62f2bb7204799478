-- A bot in front of the humans, per site: a language-model assistant answering from the
-- admin's knowledge text, and the keywords that hand a conversation to a person.
ALTER TABLE sites ADD COLUMN bot TEXT NOT NULL DEFAULT '{}';
