//! Random workloads shared by the property tests and the Postgres oracle: the tables, the
//! queries of each operator family, and random inserts, updates and deletes.

use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;

/// The tables every case starts with; `u` is `t`'s partner in joins, subqueries and set
/// operations. Small key domains with NULLs give duplicates, matches and NULL keys.
pub const TABLES: &[&str] = &[
    "CREATE TABLE t (k1 INT, k2 TEXT, v BIGINT, f DOUBLE PRECISION, d NUMERIC(6,2), ts TIMESTAMP)",
    "CREATE TABLE u (k1 INT, k2 TEXT, w BIGINT)",
];

const GROUP_KEYS: &[&str] = &["k1", "k2", "k1 % 2"];
const AGGREGATES: &[&str] = &[
    "count(*)",
    "count(v)",
    "sum(v)",
    "avg(v)",
    "min(v)",
    "max(v)",
    "sum(f)",
    "avg(f)",
    "min(f)",
    "max(f)",
    "sum(d)",
    "avg(d)",
    "min(d)",
    "max(k2)",
    "min(k2)",
    "count(k1)",
    "sum(k1)",
    "avg(k1)",
    "count(DISTINCT v)",
    "count(DISTINCT k2)",
    "sum(DISTINCT k1)",
    "avg(DISTINCT v)",
    "count(*) FILTER (WHERE v > 0)",
    "sum(v) FILTER (WHERE k2 = 'x')",
    "max(f) FILTER (WHERE k1 IS NOT NULL)",
    "bool_and(v > 0)",
    "bool_or(f < 0)",
    "stddev(v)",
    "variance(v)",
    "stddev_pop(f)",
    "var_pop(v)",
    "string_agg(k2, ',' ORDER BY k2)",
    "string_agg(k2, '|' ORDER BY v DESC, k2)",
    "array_agg(v ORDER BY v)",
    "array_agg(k1 ORDER BY k1 DESC)",
];

/// A family of operators under test, with the queries that exercise it.
#[derive(Debug, Clone, Copy)]
pub enum Family {
    Aggregates,
    Joins,
    Subqueries,
    SetOperations,
    TopN,
    ViewsOnViews,
    TimeWindows,
    WindowFunctions,
}

fn random_aggregate_query(rng: &mut StdRng) -> String {
    if rng.random_bool(0.1) {
        let columns = ["k1", "k2", "k1, k2", "k2, v % 3"].choose(rng).copied();
        return format!("SELECT DISTINCT {} FROM t", columns.unwrap_or("k1"));
    }
    let group_count = rng.random_range(0..=2);
    let mut keys: Vec<&str> = GROUP_KEYS
        .choose_multiple(rng, group_count)
        .copied()
        .collect();
    keys.sort();
    let aggregate_count = rng.random_range(1..=4);
    let mut aggregates: Vec<&str> = AGGREGATES
        .choose_multiple(rng, aggregate_count)
        .copied()
        .collect();
    // DataFusion recomputes one ORDER BY inside aggregate calls per query, not several.
    if let Some(first) = aggregates.iter().position(|a| a.contains("ORDER BY")) {
        let mut index = 0;
        aggregates.retain(|aggregate| {
            index += 1;
            index - 1 == first || !aggregate.contains("ORDER BY")
        });
    }
    let mut select: Vec<String> = keys
        .iter()
        .enumerate()
        .map(|(i, key)| format!("{key} AS g{i}"))
        .collect();
    select.extend(
        aggregates
            .iter()
            .enumerate()
            .map(|(i, aggregate)| format!("{aggregate} AS a{i}")),
    );
    let mut query = format!("SELECT {} FROM t", select.join(", "));
    if rng.random_bool(0.4) {
        query.push_str(&format!(
            " WHERE v > {} OR v IS NULL",
            rng.random_range(-30..30)
        ));
    }
    if !keys.is_empty() {
        query.push_str(&format!(" GROUP BY {}", keys.join(", ")));
        if rng.random_bool(0.3) {
            query.push_str(" HAVING count(*) > 1");
        }
    }
    query
}

fn random_join_query(rng: &mut StdRng) -> String {
    let kind = ["JOIN", "LEFT JOIN", "RIGHT JOIN", "FULL JOIN"]
        .choose(rng)
        .copied()
        .unwrap_or("JOIN");
    let on = [
        "t.k1 = u.k1",
        "t.k1 = u.k1 AND t.k2 = u.k2",
        "t.k2 = u.k2",
        "t.k1 = u.k1 AND t.v < u.w",
        "t.k2 = u.k2 AND t.v + u.w > 0",
        "t.v < u.w - 60",
    ]
    .choose(rng)
    .copied()
    .unwrap_or("t.k1 = u.k1");
    // Postgres runs a FULL JOIN only with an equality in its condition.
    let on = if kind == "FULL JOIN" && !on.contains('=') {
        "t.k1 = u.k1 AND t.v < u.w - 60"
    } else {
        on
    };
    match rng.random_range(0..8) {
        0 => format!(
            "SELECT t.k2 AS b, u.k2 AS e, count(*) AS n, sum(t.v) AS s, max(u.w) AS m \
             FROM t {kind} u ON {on} GROUP BY t.k2, u.k2"
        ),
        // Grouped by the join key among other columns: the rows stay on their workers, and a
        // group's state belongs to the worker of its second column.
        6 => "SELECT u.w AS g, t.k1 AS a, count(*) AS n, sum(t.v) AS s \
              FROM t JOIN u ON t.k1 = u.k1 GROUP BY u.w, t.k1"
            .to_string(),
        // One side already grouped by the first join key: the other is hashed by it alone.
        7 => "SELECT c.k1 AS a, c.n, u.w AS g FROM (SELECT k1, count(*) AS n FROM t GROUP BY k1) AS c \
              JOIN u ON c.k1 = u.k1 AND c.n = u.w"
            .to_string(),
        1 => "SELECT t.k1 AS a, t.v AS c, t2.v AS c2 FROM t JOIN t AS t2 \
              ON t.k1 = t2.k1 AND t.v < t2.v"
            .to_string(),
        2 => format!(
            "SELECT t.k1 AS a, u.w AS g, t3.v AS c3 FROM t {kind} u ON {on} \
             LEFT JOIN t AS t3 ON u.k2 = t3.k2 AND t3.v > 0"
        ),
        _ => {
            let mut query = format!(
                "SELECT t.k1 AS a, t.k2 AS b, t.v AS c, u.k1 AS d, u.k2 AS e, u.w AS g \
                 FROM t {kind} u ON {on}"
            );
            if rng.random_bool(0.3) {
                query.push_str(" WHERE t.v IS NULL OR t.v > -20");
            }
            query
        }
    }
}

fn random_subquery_query(rng: &mut StdRng) -> String {
    [
        "SELECT k1, k2, v FROM t WHERE k1 IN (SELECT k1 FROM u)",
        "SELECT k1, k2, v FROM t WHERE k2 IN (SELECT k2 FROM u WHERE w > 0)",
        "SELECT k1, k2, v FROM t WHERE k1 NOT IN (SELECT k1 FROM u)",
        "SELECT k1, k2, v FROM t WHERE k1 NOT IN (SELECT k1 FROM u WHERE k1 IS NOT NULL)",
        "SELECT k1, k2, v FROM t WHERE EXISTS (SELECT 1 FROM u WHERE u.k1 = t.k1 AND u.w > t.v)",
        "SELECT k1, k2, v FROM t WHERE NOT EXISTS (SELECT 1 FROM u WHERE u.k2 = t.k2)",
        "SELECT k1, k2, v FROM t WHERE v > (SELECT avg(w) FROM u)",
        "SELECT k1, k2, v FROM t WHERE v >= (SELECT max(w) FROM u WHERE u.k1 = t.k1)",
        "SELECT k1, k2, v FROM t WHERE k1 = 1 OR EXISTS (SELECT 1 FROM u WHERE u.k2 = t.k2)",
        "SELECT k1, v, (SELECT count(*) FROM u) AS n FROM t",
        // Correlated on conditions other than equality: grouped by the outer values, joined back.
        "SELECT k1, v, (SELECT count(*) FROM u WHERE u.w > t.v) AS n FROM t",
        "SELECT k1, k2, v FROM t WHERE v > (SELECT avg(w) FROM u WHERE u.k1 <> t.k1)",
        "SELECT k1, (SELECT sum(w) + t.v FROM u WHERE u.k2 = t.k2 AND u.w < t.v) AS s FROM t",
        // The first row of a correlated subquery (a top-N per outer value).
        "SELECT k1, v, (SELECT w FROM u WHERE u.k1 = t.k1 AND u.w < t.v ORDER BY w DESC LIMIT 1) \
         AS below FROM t",
        "WITH x AS (SELECT k1, sum(v) AS s FROM t GROUP BY k1) \
         SELECT x.k1, x.s, u.w FROM x JOIN u ON x.k1 = u.k1",
        "SELECT * FROM (SELECT k1, count(*) AS n FROM t GROUP BY k1) AS c WHERE n > 1",
        "SELECT c.k2, c.n, d.m FROM (SELECT k2, count(*) AS n FROM t GROUP BY k2) AS c \
         FULL JOIN (SELECT k2, max(w) AS m FROM u GROUP BY k2) AS d ON c.k2 = d.k2",
    ]
    .choose(rng)
    .map(|query| query.to_string())
    .unwrap_or_default()
}

fn random_set_query(rng: &mut StdRng) -> String {
    let operator = [
        "UNION",
        "UNION ALL",
        "EXCEPT",
        "INTERSECT",
        "EXCEPT ALL",
        "INTERSECT ALL",
    ]
    .choose(rng)
    .copied()
    .unwrap_or("UNION");
    let (left, right) = [
        ("SELECT k1, k2 FROM t", "SELECT k1, k2 FROM u"),
        ("SELECT k1 FROM t WHERE v > 0", "SELECT k1 FROM u"),
        ("SELECT k2 FROM u", "SELECT k2 FROM t"),
        ("SELECT k1, v FROM t", "SELECT k1, w FROM u"),
    ]
    .choose(rng)
    .copied()
    .unwrap_or(("SELECT k1 FROM t", "SELECT k1 FROM u"));
    format!("{left} {operator} {right}")
}

fn random_top_n_query(rng: &mut StdRng) -> String {
    let n = rng.random_range(1..=4);
    match rng.random_range(0..7) {
        0 => format!("SELECT k1, k2, v FROM t ORDER BY v DESC, k1, k2 LIMIT {n}"),
        1 => format!(
            "SELECT k1, k2, v FROM t ORDER BY k2 NULLS FIRST, v, k1 LIMIT {n} OFFSET {}",
            rng.random_range(0..3)
        ),
        2 => format!(
            "SELECT * FROM (SELECT k1, k2, v, row_number() OVER \
             (PARTITION BY k1 ORDER BY v DESC, k2) AS rn FROM t) AS r WHERE rn <= {n}"
        ),
        3 => "SELECT k2, v FROM (SELECT k2, v, row_number() OVER \
              (PARTITION BY k2 ORDER BY v NULLS FIRST) AS rn FROM t) AS r WHERE rn = 1"
            .to_string(),
        4 => "SELECT k1, v, row_number() OVER (PARTITION BY k2 ORDER BY v, k1) AS n FROM t"
            .to_string(),
        // Partitioned by the group key and more: the aggregate's rows stay where they are.
        5 => "SELECT k1, s, n, row_number() OVER (PARTITION BY n, k1 ORDER BY s) AS r \
              FROM (SELECT k1, sum(v) AS s, count(*) AS n FROM t GROUP BY k1) AS g"
            .to_string(),
        _ => format!(
            "SELECT k1, s FROM (SELECT k1, sum(v) AS s FROM t GROUP BY k1) AS g \
             ORDER BY s DESC NULLS LAST, k1 LIMIT {n}"
        ),
    }
}

/// Window functions (OVER) in every frame the window operator keeps. Each ORDER BY ends in every
/// column of `t` (or the functions read only what peers share), so the answer is the same
/// whichever way ties are broken.
fn random_window_function_query(rng: &mut StdRng) -> String {
    const ALL: &str = "v NULLS FIRST, k2 NULLS LAST, f NULLS LAST, d NULLS LAST, ts NULLS LAST, k1";
    let partition = ["PARTITION BY k1 ", "PARTITION BY k2 ", ""]
        .choose(rng)
        .copied()
        .unwrap_or("");
    let n = rng.random_range(1..=3);
    match rng.random_range(0..9) {
        0 => format!(
            "SELECT k1, k2, v, lag(v) OVER ({partition}ORDER BY {ALL}) AS p, \
             lead(v, {n}, 0) OVER ({partition}ORDER BY {ALL}) AS n FROM t"
        ),
        1 => format!(
            "SELECT k2, v, rank() OVER ({partition}ORDER BY v NULLS FIRST) AS r, \
             dense_rank() OVER ({partition}ORDER BY v NULLS FIRST) AS dr FROM t"
        ),
        2 => format!(
            "SELECT k1, v, sum(v) OVER ({partition}ORDER BY v NULLS FIRST) AS s, \
             count(*) OVER ({partition}ORDER BY v NULLS FIRST) AS c, \
             max(d) OVER ({partition}ORDER BY v NULLS FIRST) AS m FROM t"
        ),
        3 => format!(
            "SELECT k1, k2, v, f, sum(f) OVER ({partition}ORDER BY {ALL} \
             ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS s, \
             min(v) OVER ({partition}ORDER BY {ALL} ROWS UNBOUNDED PRECEDING) AS m, \
             row_number() OVER ({partition}ORDER BY {ALL}) AS rn FROM t"
        ),
        4 => format!(
            "SELECT k1, v, d, sum(d) OVER ({partition}ORDER BY {ALL} \
             ROWS BETWEEN {n} PRECEDING AND 1 FOLLOWING) AS s, \
             count(v) OVER ({partition}ORDER BY {ALL} ROWS BETWEEN 1 PRECEDING AND {n} FOLLOWING) \
             AS c, avg(f) OVER ({partition}ORDER BY {ALL} ROWS BETWEEN {n} PRECEDING AND CURRENT ROW) \
             AS a, avg(v) OVER ({partition}ORDER BY {ALL} ROWS BETWEEN 1 PRECEDING AND {n} FOLLOWING) \
             AS av FROM t"
        ),
        5 => format!(
            "SELECT k1, k2, v, first_value(v) OVER ({partition}ORDER BY {ALL}) AS fv, \
             last_value(k2) OVER ({partition}ORDER BY {ALL}) AS lv, \
             first_value(d) OVER ({partition}ORDER BY {ALL} ROWS BETWEEN {n} PRECEDING AND CURRENT ROW) \
             AS fd FROM t"
        ),
        6 => {
            "SELECT k1, v, sum(v) OVER (PARTITION BY k1) AS total, count(*) OVER () AS everything, \
              last_value(v) OVER (PARTITION BY k1 ORDER BY v NULLS FIRST \
              ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING) AS top FROM t"
                .to_string()
        }
        7 => "SELECT k1, s, lag(s) OVER (ORDER BY k1 NULLS FIRST) AS p, \
              sum(s) OVER (ORDER BY k1 NULLS FIRST) AS running \
              FROM (SELECT k1, sum(v) AS s FROM t GROUP BY k1) AS g"
            .to_string(),
        _ => format!(
            "SELECT * FROM (SELECT k1, v, lag(v) OVER ({partition}ORDER BY {ALL}) AS p FROM t) AS x \
             WHERE p > v"
        ),
    }
}

/// Statements creating the views a views-on-views case reads (plain and materialized).
pub const BASE_VIEWS: &[&str] = &[
    "CREATE MATERIALIZED VIEW base_sums AS SELECT k1, sum(v) AS s, count(*) AS n FROM t GROUP BY k1",
    "CREATE VIEW base_positive AS SELECT k1, k2, w FROM u WHERE w > 0",
];

fn random_view_on_view_query(rng: &mut StdRng) -> String {
    [
        "SELECT b.k1, b.s, p.w FROM base_sums AS b JOIN base_positive AS p ON b.k1 = p.k1",
        "SELECT k2, count(*) AS n FROM base_positive GROUP BY k2",
        "SELECT k1, s FROM base_sums WHERE n > 1",
        "SELECT b.k1, b.n, u.k2 FROM base_sums AS b LEFT JOIN u ON b.k1 = u.k1",
        "SELECT k1 FROM base_sums UNION SELECT k1 FROM base_positive",
    ]
    .choose(rng)
    .map(|query| query.to_string())
    .unwrap_or_default()
}

pub fn random_window_query(rng: &mut StdRng) -> String {
    let size = [5, 10, 20].choose(rng).copied().unwrap_or(10);
    let slide = [5, 10].choose(rng).copied().unwrap_or(5);
    match rng.random_range(0..7) {
        0 => format!(
            "SELECT window_start, window_end, count(*) AS n, sum(v) AS s \
             FROM TUMBLE(t, ts, INTERVAL '{size} seconds') GROUP BY window_start, window_end"
        ),
        1 => format!(
            "SELECT window_start, k1, max(v) AS m \
             FROM HOP(t, ts, INTERVAL '{slide} seconds', INTERVAL '{}' SECOND) GROUP BY window_start, k1",
            slide * 3
        ),
        2 => format!(
            "SELECT a.window_start, a.n, b.n AS positive FROM \
             (SELECT window_start, count(*) AS n FROM TUMBLE(t, ts, INTERVAL '{size} seconds') GROUP BY window_start) AS a \
             LEFT JOIN (SELECT window_start, count(*) AS n FROM TUMBLE(t, ts, INTERVAL '{size} seconds') \
             WHERE v > 0 GROUP BY window_start) AS b ON a.window_start = b.window_start"
        ),
        3 => format!(
            "SELECT w.k2, w.window_end, w.v FROM TUMBLE(t, ts, INTERVAL '{size} seconds') AS w WHERE w.v > 0"
        ),
        // Grouped only by window bounds: aggregated in two phases.
        4 => format!(
            "SELECT window_end, max(v) AS m, min(k2) AS lo, avg(v) AS a, count(*) AS n, \
             bool_or(v > 0) AS b, var_pop(v) AS var \
             FROM TUMBLE(t, ts, INTERVAL '{size} seconds') GROUP BY window_end"
        ),
        // The outer aggregate's group is a window bound under another name.
        5 => format!(
            "SELECT c.s, max(c.n) AS m, sum(c.n) AS total FROM \
             (SELECT window_start AS s, k1, count(*) AS n \
              FROM HOP(t, ts, INTERVAL '{slide} seconds', INTERVAL '{}' SECOND) GROUP BY window_start, k1) AS c \
             GROUP BY c.s",
            slide * 2
        ),
        _ => format!(
            "SELECT window_start, window_end, count(DISTINCT k1) AS keys \
             FROM HOP(t, ts, INTERVAL '{slide} seconds', INTERVAL '20 seconds') GROUP BY window_start, window_end"
        ),
    }
}

pub fn random_query(family: Family, rng: &mut StdRng) -> String {
    match family {
        Family::Aggregates => random_aggregate_query(rng),
        Family::Joins => random_join_query(rng),
        Family::Subqueries => random_subquery_query(rng),
        Family::SetOperations => random_set_query(rng),
        Family::TopN => random_top_n_query(rng),
        Family::ViewsOnViews => random_view_on_view_query(rng),
        Family::TimeWindows => random_window_query(rng),
        Family::WindowFunctions => random_window_function_query(rng),
    }
}

fn random_value(rng: &mut StdRng) -> String {
    let k1 = if rng.random_bool(0.15) {
        "NULL".to_string()
    } else {
        rng.random_range(0..5).to_string()
    };
    let k2 = ["'x'", "'y'", "'z'", "NULL"]
        .choose(rng)
        .copied()
        .unwrap_or("NULL");
    let v = if rng.random_bool(0.15) {
        "NULL".to_string()
    } else {
        rng.random_range(-50..50).to_string()
    };
    // Multiples of 0.25 add up exactly in binary floating point, so float sums compare exactly.
    let f = if rng.random_bool(0.1) {
        "NULL".to_string()
    } else {
        format!("{}", rng.random_range(-40..40) as f64 * 0.25)
    };
    let d = format!(
        "{}.{:02}",
        rng.random_range(-99..99),
        rng.random_range(0..100)
    );
    let ts = if rng.random_bool(0.1) {
        "NULL".to_string()
    } else {
        format!("'2026-11-28 10:00:{:02}'", rng.random_range(0..60))
    };
    format!("({k1}, {k2}, {v}, {f}, {d}, {ts})")
}

fn random_partner_row(rng: &mut StdRng) -> String {
    let k1 = if rng.random_bool(0.1) {
        "NULL".to_string()
    } else {
        rng.random_range(0..5).to_string()
    };
    let k2 = ["'x'", "'y'", "'z'", "NULL"]
        .choose(rng)
        .copied()
        .unwrap_or("NULL");
    let w = if rng.random_bool(0.1) {
        "NULL".to_string()
    } else {
        rng.random_range(-50..50).to_string()
    };
    format!("({k1}, {k2}, {w})")
}

pub fn random_change(rng: &mut StdRng) -> String {
    if rng.random_bool(0.35) {
        return match rng.random_range(0..6) {
            0..=2 => {
                let rows: Vec<String> = (0..rng.random_range(1..=8))
                    .map(|_| random_partner_row(rng))
                    .collect();
                format!("INSERT INTO u VALUES {}", rows.join(", "))
            }
            3 => format!("DELETE FROM u WHERE k1 = {}", rng.random_range(0..5)),
            4 => format!(
                "UPDATE u SET w = w - 9 WHERE k2 = '{}'",
                ["x", "y", "z"].choose(rng).copied().unwrap_or("x")
            ),
            _ => format!(
                "UPDATE u SET k1 = {} WHERE w < {}",
                rng.random_range(0..5),
                rng.random_range(-50..50)
            ),
        };
    }
    match rng.random_range(0..10) {
        0..=4 => {
            let rows: Vec<String> = (0..rng.random_range(1..=20))
                .map(|_| random_value(rng))
                .collect();
            format!("INSERT INTO t VALUES {}", rows.join(", "))
        }
        5..=6 => match rng.random_range(0..3) {
            0 => format!("DELETE FROM t WHERE k1 = {}", rng.random_range(0..5)),
            1 => format!("DELETE FROM t WHERE v < {}", rng.random_range(-50..0)),
            _ => "DELETE FROM t WHERE k2 IS NULL".to_string(),
        },
        _ => match rng.random_range(0..3) {
            0 => format!(
                "UPDATE t SET v = v + 7 WHERE k1 = {}",
                rng.random_range(0..5)
            ),
            1 => format!(
                "UPDATE t SET k1 = {} WHERE v > {}",
                rng.random_range(0..5),
                rng.random_range(0..50)
            ),
            _ => "UPDATE t SET k2 = 'x', f = f * 2, ts = ts + INTERVAL '7 seconds' WHERE k2 = 'y'"
                .to_string(),
        },
    }
}
