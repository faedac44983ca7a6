-- CPU and memory monitoring per host. Produce input first:
--   $(scripts/python-env) sql/produce_examples.py monitoring
-- then: psql -h 127.0.0.1 -p 6570 -f sql/monitoring.sql

CREATE SOURCE metrics (host TEXT NOT NULL, cpu DOUBLE PRECISION, memory_mb BIGINT, at TIMESTAMP)
  FROM KAFKA (BROKER '127.0.0.1:9092', TOPIC 'metrics')
  FORMAT JSON;

CREATE MATERIALIZED VIEW host_load AS
  SELECT host, count(*) AS samples, avg(cpu) AS avg_cpu, max(cpu) AS peak_cpu,
         max(memory_mb) AS peak_memory_mb, max(at) AS last_seen
  FROM metrics GROUP BY host;

-- Hosts that ever went above 99% CPU, and how often.
CREATE MATERIALIZED VIEW overloaded AS
  SELECT host, count(*) AS spikes FROM metrics WHERE cpu > 99 GROUP BY host;

CREATE SINK host_load_out FROM host_load
  INTO KAFKA (BROKER '127.0.0.1:9092', TOPIC 'host_load') KEY (host) FORMAT JSON ENVELOPE UPSERT;

FLUSH;

SELECT host, samples, round(avg_cpu::numeric, 2) AS avg_cpu, peak_cpu, peak_memory_mb, last_seen
FROM host_load ORDER BY host;
SELECT host, spikes FROM overloaded ORDER BY host;
