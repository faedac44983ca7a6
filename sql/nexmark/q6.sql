-- Q6, average selling price by seller: the average winning bid of each seller's 10 most recent
-- auctions (ROW_NUMBER() <= 10, where the original uses a ROWS window frame).
CREATE MATERIALIZED VIEW nexmark_q6 AS
SELECT seller, avg(final) AS avg
FROM (
  SELECT seller, final,
         row_number() OVER (PARTITION BY seller ORDER BY date_time DESC, id DESC) AS recency
  FROM (
    SELECT a.id, a.seller, a.date_time, max(b.price) AS final
    FROM auction AS a JOIN bid AS b
      ON a.id = b.auction AND b.date_time BETWEEN a.date_time AND a.expires
    GROUP BY a.id, a.seller, a.date_time
  ) AS winning
) AS recent
WHERE recency <= 10
GROUP BY seller;
