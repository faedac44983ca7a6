-- Sales totals per product. Produce input first:
--   $(scripts/python-env) sql/produce_examples.py sales
-- then: psql -h 127.0.0.1 -p 6570 -f sql/sales.sql

CREATE SOURCE sales (order_id BIGINT NOT NULL, product TEXT NOT NULL, quantity INT, price NUMERIC(10, 2))
  FROM KAFKA (BROKER '127.0.0.1:9092', TOPIC 'sales')
  FORMAT JSON;

CREATE MATERIALIZED VIEW sales_per_product AS
  SELECT product, count(*) AS orders, sum(quantity) AS units, sum(quantity * price) AS revenue
  FROM sales GROUP BY product;

CREATE MATERIALIZED VIEW sales_total AS
  SELECT count(*) AS orders, sum(quantity * price) AS revenue FROM sales;

-- Every change of a product's totals, as Debezium-style before/after records.
CREATE SINK sales_changes FROM sales_per_product
  INTO KAFKA (BROKER '127.0.0.1:9092', TOPIC 'sales_per_product') KEY (product) FORMAT JSON ENVELOPE DEBEZIUM;

FLUSH;

SELECT product, orders, units, revenue FROM sales_per_product ORDER BY product;
SELECT orders, revenue FROM sales_total;
