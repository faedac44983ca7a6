-- The seed job: JSON {"key": k, "value": v} from test_topic, sum and avg per key, the result
-- written to result_topic. Produce input first:
--   $(scripts/python-env) tests/kafka/produce.py --topic test_topic --count 100000
-- then: psql -h 127.0.0.1 -p 6570 -f sql/seed_pipeline.sql

CREATE CONNECTION IF NOT EXISTS local_kafka TO KAFKA (BROKER '127.0.0.1:9092');

CREATE SOURCE visits (key INT, value INT)
  FROM KAFKA (CONNECTION local_kafka, TOPIC 'test_topic', START OFFSET 'earliest')
  FORMAT JSON;

CREATE MATERIALIZED VIEW per_key AS
  SELECT key, sum(value) AS sum, avg(value) AS avg FROM visits GROUP BY key;

CREATE SINK per_key_out FROM per_key
  INTO KAFKA (CONNECTION local_kafka, TOPIC 'result_topic') KEY (key) FORMAT JSON ENVELOPE UPSERT;

-- Wait until everything test_topic holds now is in the view (no sleeping).
FLUSH;

SELECT key, sum, avg FROM per_key ORDER BY key LIMIT 5;
SELECT partition, "offset", high_watermark, lag, messages, errors FROM tributary.source_progress ORDER BY partition;
