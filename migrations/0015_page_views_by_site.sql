-- The retention purge removes each site's oldest page views, a bounded number per run: found by
-- site and time, not by a scan of every page view.
CREATE INDEX page_views_by_site ON page_views (site_id, created_at);
