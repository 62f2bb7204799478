-- When a webhook's current run of failed attempts began (unix ms; NULL while it is not failing).
-- A webhook is switched off only after failing both often and for hours (parley-core's
-- webhook::FailureStreak): a count alone switched it off within seconds of an outage.
ALTER TABLE webhooks ADD COLUMN failing_since INTEGER;
