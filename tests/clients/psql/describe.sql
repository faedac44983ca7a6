-- psql's \d family against Tributary: tables, views, materialized views, schemas, databases;
-- then \copy in and out.
CREATE TABLE orders (id INT NOT NULL, customer TEXT, amount NUMERIC(10,2), placed TIMESTAMP);
CREATE VIEW big_orders AS SELECT id, amount FROM orders WHERE amount > 100;
CREATE MATERIALIZED VIEW per_customer AS SELECT customer, count(*) AS orders, sum(amount) AS total FROM orders GROUP BY customer;
INSERT INTO orders VALUES (1, 'ada', 120.50, '2026-01-01 10:00:00'), (2, 'bob', 80.00, '2026-01-01 11:00:00');
\echo '=== dt'
\dt
\echo '=== dv public.*'
\dv public.*
\echo '=== dm'
\dm
\echo '=== dn'
\dn
\echo '=== d orders'
\d orders
\echo '=== d+ orders'
\d+ orders
\echo '=== d per_customer'
\d per_customer
\echo '=== d+ big_orders'
\d+ big_orders
\echo '=== d+ per_customer'
\d+ per_customer
\echo '=== df'
\df
\echo '=== dt+'
\dt+
\echo '=== x'
\x on
SELECT * FROM per_customer ORDER BY customer;
\x off
\echo '=== l'
\l
\echo '=== copy'
\copy orders (id, customer, amount) from stdin with (format csv)
3,"cy, jr",10.25
4,,
\.
\copy (select id, customer, amount from orders order by id) to stdout with csv header
SELECT * FROM per_customer ORDER BY customer;
