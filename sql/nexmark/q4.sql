-- Q4, average price per category: the average winning bid of the auctions of each category
-- (a bid wins when it is the highest placed while the auction was open).
CREATE MATERIALIZED VIEW nexmark_q4 AS
SELECT q.category, avg(q.final) AS avg
FROM (
  SELECT max(b.price) AS final, a.category
  FROM auction AS a JOIN bid AS b
    ON a.id = b.auction AND b.date_time BETWEEN a.date_time AND a.expires
  GROUP BY a.id, a.category
) AS q
GROUP BY q.category;
