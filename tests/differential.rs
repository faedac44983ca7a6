//! Differential testing against PostgreSQL, in the spirit of SQLancer and sqlsmith: random,
//! well-typed queries (nested expressions over NULLs, casts, CASE, IN lists, LIKE; joins;
//! grouped and global aggregates with HAVING; scalar, IN and EXISTS subqueries, correlated or
//! not; set operations; DISTINCT) over random tables. Each query runs ad hoc on Tributary and on
//! PostgreSQL 15, and the answers must agree; each one Tributary can maintain also becomes a
//! materialized view, which must keep agreeing while the tables change. A query that fails on
//! both sides agrees; one that fails on one side only is a difference.
//!
//! The run is bounded by time: `TRIBUTARY_DIFFERENTIAL_SECONDS` (default 40; a soak run sets
//! more, and `TRIBUTARY_DIFFERENTIAL_FIRST_SEED` other cases). `TRIBUTARY_PROPERTY_SEED` replays
//! one case. A failure prints the case's statements.
//!
//! Left out of the grammar because they are known gaps, not to be rediscovered on every run
//! (README, "Known gaps"): decimal literals (DOUBLE here, NUMERIC in Postgres; only their
//! digits are compared); an aggregate in a subquery over only the outer query's columns, which
//! Postgres evaluates in the outer query (making it an aggregate query) and Tributary in the
//! subquery; scalar subqueries and IN/EXISTS inside aggregate arguments and GROUP BY keys
//! (DataFusion's decorrelation leaves them in the plan: 0A000 "Physical plan does not support
//! logical expression ScalarSubquery"), and IN/EXISTS anywhere but as a conjunct of WHERE (in
//! the SELECT list, under OR, NOT or CASE: the same error); a subquery inside a subquery that
//! reads the outermost query's columns (the same error); `concat` of arguments that all fold
//! to empty constants (DataFusion's simplifier leaves `concat()`, an error; Postgres gives '').
//! two aggregates whose arguments differ only by a cast (`max(k1), max(k1::text)`: DataFusion
//! names both `max(k1)` and refuses the duplicate; such queries are skipped, see `known_gap`);
//! `NULL NOT IN (SELECT ...)` with a constant NULL (DataFusion's optimizer drops the condition,
//! ad hoc and in views, where Postgres keeps no row unless the subquery is empty);
//! `round(numeric, n)` beside another NUMERIC in coalesce or CASE (its result keeps scale n, the
//! other side's scale differs, and DataFusion's CASE refuses the mix after folding).
//! Floats are compared within 1e-9 and numerics to the scale both show.

mod common;

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use tokio_postgres::Client;

use common::TestServer;
use common::postgres::{agree, answer, postgres};
use common::workload::{TABLES, random_change};

/// The SQL types the grammar builds expressions of.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Type {
    Int,
    Big,
    Float,
    Numeric,
    Text,
    Bool,
}

const TYPES: [Type; 6] = [
    Type::Int,
    Type::Big,
    Type::Float,
    Type::Numeric,
    Type::Text,
    Type::Bool,
];

/// The columns a query can read, with their types.
#[derive(Clone)]
struct Scope {
    columns: Vec<(String, Type)>,
}

impl Scope {
    fn of_t(qualifier: &str) -> Scope {
        let prefix = if qualifier.is_empty() {
            String::new()
        } else {
            format!("{qualifier}.")
        };
        Scope {
            columns: [
                ("k1", Type::Int),
                ("k2", Type::Text),
                ("v", Type::Big),
                ("f", Type::Float),
                ("d", Type::Numeric),
            ]
            .into_iter()
            .map(|(name, kind)| (format!("{prefix}{name}"), kind))
            .collect(),
        }
    }

    fn of_u(qualifier: &str) -> Scope {
        let prefix = if qualifier.is_empty() {
            String::new()
        } else {
            format!("{qualifier}.")
        };
        Scope {
            columns: [("k1", Type::Int), ("k2", Type::Text), ("w", Type::Big)]
                .into_iter()
                .map(|(name, kind)| (format!("{prefix}{name}"), kind))
                .collect(),
        }
    }

    fn joined(mut self, other: Scope) -> Scope {
        self.columns.extend(other.columns);
        self
    }

    fn column(&self, rng: &mut StdRng, kind: Type) -> Option<String> {
        let matching: Vec<&String> = self
            .columns
            .iter()
            .filter(|(_, column_kind)| *column_kind == kind)
            .map(|(name, _)| name)
            .collect();
        matching.choose(rng).map(|name| name.to_string())
    }
}

struct Generator {
    rng: StdRng,
    /// How many subqueries deep the expression being built is; they do not nest (a known gap).
    subquery_depth: usize,
    /// Scalar subqueries are left out of aggregate arguments and GROUP BY keys (a known gap).
    in_aggregate: bool,
}

impl Generator {
    fn literal(&mut self, kind: Type) -> String {
        let rng = &mut self.rng;
        if rng.random_bool(0.1) {
            return match kind {
                Type::Int => "CAST(NULL AS INT)",
                Type::Big => "CAST(NULL AS BIGINT)",
                Type::Float => "CAST(NULL AS DOUBLE PRECISION)",
                Type::Numeric => "CAST(NULL AS NUMERIC)",
                Type::Text => "CAST(NULL AS TEXT)",
                Type::Bool => "CAST(NULL AS BOOLEAN)",
            }
            .to_string();
        }
        match kind {
            Type::Int => rng.random_range(-3..=5).to_string(),
            Type::Big => format!("CAST({} AS BIGINT)", rng.random_range(-60..=60)),
            Type::Float => format!(
                "CAST({} AS DOUBLE PRECISION)",
                rng.random_range(-8..=8) as f64 * 0.25
            ),
            Type::Numeric => format!(
                "CAST('{}.{:02}' AS NUMERIC)",
                rng.random_range(-20..=20),
                rng.random_range(0..100)
            ),
            Type::Text => ["'x'", "'y'", "'z'", "''", "'xy'", "'Z'"]
                .choose(rng)
                .copied()
                .unwrap_or("'x'")
                .to_string(),
            Type::Bool => ["TRUE", "FALSE"]
                .choose(rng)
                .copied()
                .unwrap_or("TRUE")
                .to_string(),
        }
    }

    fn leaf(&mut self, scope: &Scope, kind: Type) -> String {
        if self.rng.random_bool(0.65)
            && let Some(column) = scope.column(&mut self.rng, kind)
        {
            return column;
        }
        self.literal(kind)
    }

    /// An expression of type `kind` over `scope`, `depth` levels at most.
    fn expression(&mut self, scope: &Scope, kind: Type, depth: usize) -> String {
        if depth == 0 || self.rng.random_bool(0.3) {
            return self.leaf(scope, kind);
        }
        let next = depth - 1;
        // Forms every type has.
        match self.rng.random_range(0..10) {
            0 => {
                return format!(
                    "CASE WHEN {} THEN {} ELSE {} END",
                    self.expression(scope, Type::Bool, next),
                    self.expression(scope, kind, next),
                    self.expression(scope, kind, next)
                );
            }
            1 => {
                return self.two(scope, kind, next, ["coalesce(", ", ", ")"]);
            }
            2 if kind != Type::Bool => {
                return self.two(scope, kind, next, ["nullif(", ", ", ")"]);
            }
            3 if self.subquery_depth == 0 && !self.in_aggregate && kind != Type::Bool => {
                return self.scalar_subquery(scope, kind);
            }
            _ => {}
        }
        match kind {
            Type::Int | Type::Big => {
                let operand = |generator: &mut Generator| generator.expression(scope, kind, next);
                match self.rng.random_range(0..8) {
                    0 => self.two(scope, kind, next, ["(", " + ", ")"]),
                    1 => self.two(scope, kind, next, ["(", " - ", ")"]),
                    2 => format!("({} * {})", operand(self), self.literal(kind)),
                    3 => format!("abs({})", operand(self)),
                    4 => format!("({} % {})", operand(self), self.rng.random_range(1..=4)),
                    5 => format!("({} / {})", operand(self), self.rng.random_range(1..=4)),
                    6 if kind == Type::Int => {
                        format!("length({})", self.expression(scope, Type::Text, next))
                    }
                    _ => format!(
                        "{}({}, {})",
                        ["greatest", "least"]
                            .choose(&mut self.rng)
                            .copied()
                            .unwrap_or("least"),
                        operand(self),
                        operand(self)
                    ),
                }
            }
            Type::Float => match self.rng.random_range(0..6) {
                0 => self.two(scope, kind, next, ["(", " + ", ")"]),
                1 => format!(
                    "({} * {})",
                    self.expression(scope, kind, next),
                    self.literal(kind)
                ),
                2 => format!("abs({})", self.expression(scope, kind, next)),
                3 => format!(
                    "CAST({} AS DOUBLE PRECISION)",
                    self.expression(scope, Type::Big, next)
                ),
                4 => format!("floor({})", self.expression(scope, kind, next)),
                _ => format!("(- {})", self.expression(scope, kind, next)),
            },
            Type::Numeric => match self.rng.random_range(0..5) {
                0 => self.two(scope, kind, next, ["(", " + ", ")"]),
                1 => format!(
                    "({} * {})",
                    self.expression(scope, kind, next),
                    self.rng.random_range(-3..=3)
                ),
                2 => format!("abs({})", self.expression(scope, kind, next)),
                3 => format!(
                    "CAST({} AS NUMERIC)",
                    self.expression(scope, Type::Int, next)
                ),
                _ => format!("(- {})", self.expression(scope, kind, next)),
            },
            Type::Text => match self.rng.random_range(0..6) {
                0 => self.two(scope, kind, next, ["(", " || ", ")"]),
                1 => format!("upper({})", self.expression(scope, kind, next)),
                2 => format!("lower({})", self.expression(scope, kind, next)),
                3 => format!("substr({}, 1, 1)", self.expression(scope, kind, next)),
                4 => format!("CAST({} AS TEXT)", self.expression(scope, Type::Int, next)),
                _ => format!(
                    "concat({}, {})",
                    scope
                        .column(&mut self.rng, kind)
                        .unwrap_or_else(|| "'x'".to_string()),
                    self.expression(scope, kind, next)
                ),
            },
            Type::Bool => self.predicate(scope, next),
        }
    }

    /// Two expressions of type `kind` inside `parts`: `parts[0]`, the first, `parts[1]`, the
    /// second, `parts[2]` (`(a + b)`, `nullif(a, b)`).
    fn two(&mut self, scope: &Scope, kind: Type, depth: usize, parts: [&str; 3]) -> String {
        let first = self.expression(scope, kind, depth);
        let second = self.expression(scope, kind, depth);
        format!("{}{first}{}{second}{}", parts[0], parts[1], parts[2])
    }

    fn predicate(&mut self, scope: &Scope, depth: usize) -> String {
        let compared = [Type::Int, Type::Big, Type::Float, Type::Numeric, Type::Text]
            .choose(&mut self.rng)
            .copied()
            .unwrap_or(Type::Int);
        match self.rng.random_range(0..10) {
            0..=2 => {
                let operator = ["=", "<>", "<", "<=", ">", ">=", "IS DISTINCT FROM"]
                    .choose(&mut self.rng)
                    .copied()
                    .unwrap_or("=");
                format!(
                    "({} {operator} {})",
                    self.expression(scope, compared, depth),
                    self.expression(scope, compared, depth)
                )
            }
            3 => format!(
                "({} IS {}NULL)",
                self.expression(scope, compared, depth),
                if self.rng.random_bool(0.5) {
                    "NOT "
                } else {
                    ""
                }
            ),
            4 => format!("(NOT {})", self.expression(scope, Type::Bool, depth)),
            5 => format!(
                "({} {} {})",
                self.expression(scope, Type::Bool, depth),
                ["AND", "OR"]
                    .choose(&mut self.rng)
                    .copied()
                    .unwrap_or("AND"),
                self.expression(scope, Type::Bool, depth)
            ),
            6 => {
                let items: Vec<String> = (0..self.rng.random_range(1..=3))
                    .map(|_| self.literal(compared))
                    .collect();
                format!(
                    "({} {}IN ({}))",
                    self.expression(scope, compared, depth),
                    if self.rng.random_bool(0.3) {
                        "NOT "
                    } else {
                        ""
                    },
                    items.join(", ")
                )
            }
            7 => format!(
                "({} BETWEEN {} AND {})",
                self.expression(scope, compared, depth),
                self.literal(compared),
                self.literal(compared)
            ),
            8 => format!(
                "({} LIKE '{}')",
                self.expression(scope, Type::Text, depth),
                ["x%", "%y", "_", "%"]
                    .choose(&mut self.rng)
                    .copied()
                    .unwrap_or("%")
            ),
            _ => self.leaf(scope, Type::Bool),
        }
    }

    /// `(SELECT aggregate(...) FROM u [WHERE ...])`, often correlated with the outer row.
    fn scalar_subquery(&mut self, outer: &Scope, kind: Type) -> String {
        self.subquery_depth += 1;
        let inner = Scope::of_u("x");
        let scope = inner.clone().joined(outer.clone());
        let aggregate = match kind {
            Type::Int | Type::Big => match self.rng.random_range(0..3) {
                0 => "count(*)".to_string(),
                1 => format!("max({})", self.expression(&inner, kind, 1)),
                _ => format!("min({})", self.expression(&inner, kind, 1)),
            },
            Type::Text => format!("max({})", self.expression(&inner, Type::Text, 1)),
            other => format!("max({})", self.expression(&inner, other, 1)),
        };
        let condition = self.expression(&scope, Type::Bool, 2);
        self.subquery_depth -= 1;
        let cast = match kind {
            Type::Int => "INT",
            Type::Big => "BIGINT",
            Type::Float => "DOUBLE PRECISION",
            Type::Numeric => "NUMERIC",
            Type::Text => "TEXT",
            Type::Bool => "BOOLEAN",
        };
        format!("CAST((SELECT {aggregate} FROM u AS x WHERE {condition}) AS {cast})")
    }

    /// `[NOT] EXISTS (...)` or `... [NOT] IN (SELECT ...)`.
    fn membership_subquery(&mut self, outer: &Scope) -> String {
        self.subquery_depth += 1;
        let inner = Scope::of_u("x");
        let scope = inner.clone().joined(outer.clone());
        let condition = self.expression(&scope, Type::Bool, 2);
        let made = if self.rng.random_bool(0.5) {
            format!(
                "({}EXISTS (SELECT 1 FROM u AS x WHERE {condition}))",
                if self.rng.random_bool(0.3) {
                    "NOT "
                } else {
                    ""
                }
            )
        } else {
            let kind = [Type::Int, Type::Text]
                .choose(&mut self.rng)
                .copied()
                .unwrap_or(Type::Int);
            // The tested value reads a column: a constant NULL NOT IN (...) is a known gap.
            let tested = match outer.column(&mut self.rng, kind) {
                Some(column) => column,
                None => self.literal(kind),
            };
            format!(
                "({tested} {}IN (SELECT {} FROM u AS x WHERE {condition}))",
                if self.rng.random_bool(0.3) {
                    "NOT "
                } else {
                    ""
                },
                self.expression(&inner, kind, 1)
            )
        };
        self.subquery_depth -= 1;
        made
    }

    /// A SELECT list of `count` typed expressions named c0, c1, ...
    fn select_list(&mut self, scope: &Scope, count: usize) -> String {
        (0..count)
            .map(|place| {
                let kind = TYPES.choose(&mut self.rng).copied().unwrap_or(Type::Int);
                format!("{} AS c{place}", self.expression(scope, kind, 3))
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn aggregate(&mut self, scope: &Scope) -> String {
        self.in_aggregate = true;
        let call = self.aggregate_call(scope);
        self.in_aggregate = false;
        call
    }

    fn aggregate_call(&mut self, scope: &Scope) -> String {
        let kind = [
            Type::Int,
            Type::Big,
            Type::Numeric,
            Type::Float,
            Type::Text,
            Type::Bool,
        ]
        .choose(&mut self.rng)
        .copied()
        .unwrap_or(Type::Int);
        let argument = self.expression(scope, kind, 2);
        let distinct = if self.rng.random_bool(0.15) {
            "DISTINCT "
        } else {
            ""
        };
        let call = match (kind, self.rng.random_range(0..4)) {
            (_, 0) => format!("count({distinct}{argument})"),
            (Type::Int | Type::Big | Type::Numeric | Type::Float, 1) => {
                format!("sum({distinct}{argument})")
            }
            (Type::Big | Type::Numeric, 2) => format!("avg({distinct}{argument})"),
            (Type::Bool, _) => format!(
                "{}({argument})",
                ["bool_and", "bool_or"]
                    .choose(&mut self.rng)
                    .copied()
                    .unwrap_or("bool_or")
            ),
            (_, 2) => format!("min({argument})"),
            _ => format!("max({argument})"),
        };
        if self.rng.random_bool(0.15) {
            let filter = self.expression(scope, Type::Bool, 2);
            return format!("{call} FILTER (WHERE {filter})");
        }
        call
    }

    fn query(&mut self) -> String {
        let (from, scope) = match self.rng.random_range(0..6) {
            0..=2 => ("t".to_string(), Scope::of_t("")),
            3 => ("u".to_string(), Scope::of_u("")),
            _ => {
                let join = ["JOIN", "LEFT JOIN", "RIGHT JOIN", "FULL JOIN"]
                    .choose(&mut self.rng)
                    .copied()
                    .unwrap_or("JOIN");
                let scope = Scope::of_t("t").joined(Scope::of_u("u"));
                let extra = if self.rng.random_bool(0.3) {
                    format!(" AND {}", self.expression(&scope, Type::Bool, 1))
                } else {
                    String::new()
                };
                (format!("t {join} u ON t.k1 = u.k1{extra}"), scope)
            }
        };
        let mut conditions = Vec::new();
        if self.rng.random_bool(0.5) {
            conditions.push(self.expression(&scope, Type::Bool, 3));
        }
        if self.rng.random_bool(0.25) {
            conditions.push(self.membership_subquery(&scope));
        }
        let filter = if conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conditions.join(" AND "))
        };
        match self.rng.random_range(0..10) {
            0..=3 => {
                let distinct = if self.rng.random_bool(0.15) {
                    "DISTINCT "
                } else {
                    ""
                };
                let count = self.rng.random_range(1..=3);
                format!(
                    "SELECT {distinct}{} FROM {from}{filter}",
                    self.select_list(&scope, count)
                )
            }
            4..=7 => {
                self.in_aggregate = true;
                let keys: Vec<String> = (0..self.rng.random_range(0..=2))
                    .map(|_| {
                        let kind = [Type::Int, Type::Text, Type::Big, Type::Bool]
                            .choose(&mut self.rng)
                            .copied()
                            .unwrap_or(Type::Int);
                        // Postgres refuses a constant key (42601): keys read a column.
                        let column = scope.column(&mut self.rng, kind);
                        match (column, self.rng.random_range(0..3)) {
                            (Some(column), 0) => column,
                            (Some(column), 1) => {
                                format!("coalesce({column}, {})", self.literal(kind))
                            }
                            _ => scope.column(&mut self.rng, Type::Int).map_or_else(
                                || "1".to_string(),
                                |column| format!("({column} % 2)"),
                            ),
                        }
                    })
                    .collect();
                self.in_aggregate = false;
                let mut items: Vec<String> = keys
                    .iter()
                    .enumerate()
                    .map(|(place, key)| format!("{key} AS g{place}"))
                    .collect();
                for place in 0..self.rng.random_range(1..=3) {
                    items.push(format!("{} AS a{place}", self.aggregate(&scope)));
                }
                let mut sql = format!("SELECT {} FROM {from}{filter}", items.join(", "));
                if !keys.is_empty() {
                    sql += &format!(" GROUP BY {}", keys.join(", "));
                    if self.rng.random_bool(0.3) {
                        let having = self.aggregate(&scope);
                        sql += &format!(" HAVING {having} IS NOT NULL");
                    }
                }
                sql
            }
            _ => {
                let kind = [Type::Int, Type::Text, Type::Big]
                    .choose(&mut self.rng)
                    .copied()
                    .unwrap_or(Type::Int);
                let left = self.expression(&Scope::of_t(""), kind, 2);
                let right = self.expression(&Scope::of_u(""), kind, 2);
                let operator = ["UNION", "UNION ALL", "EXCEPT", "EXCEPT ALL", "INTERSECT"]
                    .choose(&mut self.rng)
                    .copied()
                    .unwrap_or("UNION");
                format!("SELECT {left} AS c0 FROM t {operator} SELECT {right} FROM u")
            }
        }
    }
}

/// Errors Tributary gives where Postgres answers, known and listed in the module's doc: the
/// query is skipped.
fn known_gap(error: &anyhow::Error) -> bool {
    let message = format!("{error:#}");
    // Two aggregates whose arguments differ only by a cast (`max(k1)`, `max(k1::text)`) get
    // one name from DataFusion, which then refuses the plan.
    message.contains("specified more than once")
}

/// Whether an error is Tributary refusing to maintain a query (0A000), not a wrong answer.
fn not_maintainable(error: &tokio_postgres::Error) -> bool {
    error
        .as_db_error()
        .is_some_and(|error| error.code().code() == "0A000")
}

/// What the cases compared, printed at the end so a run shows what it covered.
#[derive(Default)]
struct Tally {
    answered: usize,
    failed_on_both: usize,
    known_gaps: usize,
    views: usize,
}

async fn run_case(
    seed: u64,
    tributary: &Client,
    postgres: &Client,
    tally: &mut Tally,
) -> Result<()> {
    let mut rng = StdRng::seed_from_u64(seed);
    postgres
        .batch_execute(
            "DROP SCHEMA IF EXISTS differential CASCADE; CREATE SCHEMA differential; \
             SET search_path = differential",
        )
        .await?;
    let mut history: Vec<String> = Vec::new();
    for statement in TABLES {
        tributary.batch_execute(statement).await?;
        postgres.batch_execute(statement).await?;
        history.push(statement.to_string());
    }
    let mut generator = Generator {
        rng: StdRng::seed_from_u64(rng.random()),
        subquery_depth: 0,
        in_aggregate: false,
    };
    let mut views: Vec<(String, String)> = Vec::new();
    for step in 0..rng.random_range(2..=5) {
        let change = random_change(&mut rng);
        for client in [tributary, postgres] {
            client
                .batch_execute(&change)
                .await
                .with_context(|| format!("seed {seed}: {change}"))?;
        }
        history.push(change);
        for _ in 0..4 {
            let query = generator.query();
            let ours = answer(tributary, &query).await;
            let theirs = answer(postgres, &query).await;
            match (&ours, &theirs) {
                (Ok(ours), Ok(theirs)) if agree(ours, theirs) => tally.answered += 1,
                (Err(_), Err(_)) => tally.failed_on_both += 1,
                (Err(error), Ok(_)) if known_gap(error) => {
                    tally.known_gaps += 1;
                    continue;
                }
                _ => bail!(
                    "seed {seed}: {query}\ndiffers from PostgreSQL after:\n{}\ntributary: {:?}\npostgres:  {:?}",
                    history.join(";\n"),
                    ours.as_ref().map(|answer| &answer.0),
                    theirs.as_ref().map(|answer| &answer.0)
                ),
            }
            if theirs.is_err() || views.len() >= 2 {
                continue;
            }
            let name = format!("differential_{step}_{}", views.len());
            let create = format!("CREATE MATERIALIZED VIEW {name} AS {query}");
            match tributary.batch_execute(&create).await {
                Ok(()) => {
                    history.push(create);
                    views.push((name, query));
                    tally.views += 1;
                }
                Err(error) if not_maintainable(&error) => {}
                Err(error) => bail!("seed {seed}: {create}: {error}"),
            }
        }
        for (name, query) in &views {
            let maintained = answer(tributary, &format!("SELECT * FROM {name}")).await?;
            let expected = answer(postgres, query).await?;
            if !agree(&maintained, &expected) {
                bail!(
                    "seed {seed}: view {name} ({query}) differs from PostgreSQL after:\n{}\ntributary: {:?}\npostgres:  {:?}",
                    history.join(";\n"),
                    maintained.0,
                    expected.0
                );
            }
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_queries_match_postgres() -> Result<()> {
    let budget = Duration::from_secs(
        std::env::var("TRIBUTARY_DIFFERENTIAL_SECONDS")
            .ok()
            .and_then(|seconds| seconds.parse().ok())
            .unwrap_or(40),
    );
    let replay: Option<u64> = std::env::var("TRIBUTARY_PROPERTY_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok());
    let postgres = postgres().await?;
    let started = Instant::now();
    // A soak run can start elsewhere than the default run (`TRIBUTARY_DIFFERENTIAL_FIRST_SEED`).
    let first_seed = std::env::var("TRIBUTARY_DIFFERENTIAL_FIRST_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or(51_000_000);
    let mut seed = replay.unwrap_or(first_seed);
    let mut cases = 0;
    let mut tally = Tally::default();
    while cases == 0 || (replay.is_none() && started.elapsed() < budget) {
        let server = TestServer::start().await;
        let tributary = server.connect().await;
        run_case(seed, &tributary, &postgres, &mut tally).await?;
        seed += 1;
        cases += 1;
    }
    println!(
        "{cases} cases in {:.1} s: {} queries answered alike, {} failed on both sides, {} skipped \
         as known gaps; {} materialized views followed their tables",
        started.elapsed().as_secs_f64(),
        tally.answered,
        tally.failed_on_both,
        tally.known_gaps,
        tally.views
    );
    Ok(())
}
