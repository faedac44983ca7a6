-- Q2, selection: the bids on a set of auctions (every 123rd, as RisingWave and Arroyo run it).
CREATE MATERIALIZED VIEW nexmark_q2 AS
SELECT auction, price FROM bid WHERE auction % 123 = 0;
