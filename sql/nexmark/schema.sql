-- The Nexmark tables. Tributary's in-process benchmark and tests fill them with the events of
-- the `nexmark` crate's generator; the queries q0.sql ... q17.sql maintain views over them.
CREATE TABLE person (id BIGINT, name TEXT, email_address TEXT, credit_card TEXT, city TEXT,
  state TEXT, date_time TIMESTAMP, extra TEXT);
CREATE TABLE auction (id BIGINT, item_name TEXT, description TEXT, initial_bid BIGINT,
  reserve BIGINT, date_time TIMESTAMP, expires TIMESTAMP, seller BIGINT, category BIGINT, extra TEXT);
CREATE TABLE bid (auction BIGINT, bidder BIGINT, price BIGINT, channel TEXT, url TEXT,
  date_time TIMESTAMP, extra TEXT);
