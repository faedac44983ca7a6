-- Live page-visit counts. Produce input first:
--   $(scripts/python-env) sql/produce_examples.py visits
-- then: psql -h 127.0.0.1 -p 6570 -f sql/visits.sql

CREATE SOURCE page_visits (page TEXT, user_id BIGINT, ms INT, at TIMESTAMP)
  FROM KAFKA (BROKER '127.0.0.1:9092', TOPIC 'page_visits')
  FORMAT JSON
  INCLUDE PARTITION, OFFSET, TIMESTAMP AS produced_at;

-- Visits and load times per page, maintained as events arrive.
CREATE MATERIALIZED VIEW visits_per_page AS
  SELECT page, count(*) AS visits, avg(ms) AS avg_ms, max(ms) AS slowest_ms
  FROM page_visits GROUP BY page;

-- Distinct visitors per page.
CREATE MATERIALIZED VIEW visitors_per_page AS
  SELECT page, count(DISTINCT user_id) AS visitors FROM page_visits GROUP BY page;

-- Pages whose average load time is above a second.
CREATE MATERIALIZED VIEW slow_pages AS
  SELECT page, avg(ms) AS avg_ms FROM page_visits GROUP BY page HAVING avg(ms) > 1000;

CREATE SINK visits_out FROM visits_per_page
  INTO KAFKA (BROKER '127.0.0.1:9092', TOPIC 'visits_per_page') KEY (page) FORMAT JSON ENVELOPE UPSERT;

FLUSH;

SELECT page, visits, round(avg_ms, 1) AS avg_ms, slowest_ms FROM visits_per_page ORDER BY page;
SELECT page, visitors FROM visitors_per_page ORDER BY page;
SELECT page, round(avg_ms, 1) AS avg_ms FROM slow_pages ORDER BY page;
