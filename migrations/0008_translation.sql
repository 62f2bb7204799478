-- Translation settings per site (provider, endpoint, key, agents' language). Not part of the
-- public widget configuration, since it holds a key.
ALTER TABLE sites ADD COLUMN translation TEXT NOT NULL DEFAULT '{}';
