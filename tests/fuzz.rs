//! Fuzz targets against the real server over its real protocol: SQL built by a grammar (the
//! front end: parse → plan → lower, ad hoc queries, views, writes), SQL token soup (the parser
//! and its error paths), and pgwire frames (the message decoder and the session's state
//! machine). Each input must leave the server answering, and nothing on the server's side may
//! panic, not even where a panic would be caught and turned into an error.
//!
//! `cargo test` runs each target on random inputs for a bounded time (`TRIBUTARY_FUZZ_SECONDS`,
//! default 20; bolero's `BOLERO_RANDOM_SEED` replays one input, and a failure prints it).
//! Coverage-guided, with libFuzzer: `cargo install cargo-bolero`, then
//! `cargo bolero test --test fuzz generated_statements` (or `token_soup`, `pgwire_frames`);
//! inputs it finds go to `tests/__fuzz__/fuzz__<target>/crashes/`, which `cargo test` replays
//! first, so a crash once found stays a regression test (as do the statements and messages it
//! found so far, in `slt/` and `tests/protocol.rs`).

mod common;

use std::sync::Once;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::TestServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Panics anywhere in this process since it started (the server runs in it).
static PANICS: AtomicUsize = AtomicUsize::new(0);

/// Counts every panic, then lets the hook that was there (bolero's, or the default) report it.
fn count_panics() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            previous(info);
        }));
    });
}

fn fuzz_time() -> Duration {
    let seconds = std::env::var("TRIBUTARY_FUZZ_SECONDS")
        .ok()
        .and_then(|seconds| seconds.parse().ok())
        .unwrap_or(20);
    Duration::from_secs(seconds)
}

/// The server and the client connection every input of a target goes through, on the runtime
/// `tributary serve` uses (its threads have the stack deep statements need).
struct Harness {
    runtime: tokio::runtime::Runtime,
    server: TestServer,
    client: tokio_postgres::Client,
}

impl Harness {
    fn start() -> Harness {
        count_panics();
        let runtime = tributary::server::runtime().expect("runtime");
        let (server, client) = runtime.block_on(async {
            let server = TestServer::start().await;
            let client = server.connect().await;
            (server, client)
        });
        let harness = Harness {
            runtime,
            server,
            client,
        };
        harness.simple(SCHEMA).expect("create the schema");
        harness
    }

    /// Runs `sql` on the harness's connection; the error text on failure. A statement that
    /// runs on (a SUBSCRIBE; statement_timeout ends the rest) is cancelled after 10 s, and
    /// must then end.
    fn simple(&self, sql: &str) -> Result<(), String> {
        self.runtime.block_on(async {
            let query = self.client.simple_query(sql);
            tokio::pin!(query);
            let answer = match tokio::time::timeout(Duration::from_secs(10), &mut query).await {
                Ok(answer) => answer,
                Err(_) => {
                    self.client
                        .cancel_token()
                        .cancel_query(tokio_postgres::NoTls)
                        .await
                        .expect("send a cancel request");
                    tokio::time::timeout(Duration::from_secs(30), query)
                        .await
                        .unwrap_or_else(|_| panic!("{sql:?} ran on 30 s after its cancel"))
                }
            };
            match answer {
                Ok(_) => Ok(()),
                Err(error) => match error.as_db_error() {
                    Some(error) => Err(format!("{}: {}", error.code().code(), error.message())),
                    None => panic!("the connection failed on {sql:?}: {error}"),
                },
            }
        })
    }

    /// The server answers a new connection, and no panic happened since `panics_before`.
    fn check_alive(&self, panics_before: usize, input: &dyn std::fmt::Debug) {
        self.runtime.block_on(async {
            let client = tokio::time::timeout(Duration::from_secs(30), self.server.connect())
                .await
                .unwrap_or_else(|_| panic!("no new connection within 30 s after {input:?}"));
            let rows = client
                .simple_query("SELECT 1")
                .await
                .unwrap_or_else(|error| panic!("SELECT 1 failed after {input:?}: {error}"));
            assert!(!rows.is_empty());
        });
        assert_eq!(
            PANICS.load(Ordering::SeqCst),
            panics_before,
            "the server panicked on {input:?}"
        );
    }
}

/// Two small tables every generated statement may read and write.
const SCHEMA: &str = "
    SET statement_timeout = '5s';
    CREATE TABLE t (i INT, n BIGINT, s TEXT, f DOUBLE PRECISION, p BOOLEAN, ts TIMESTAMP, d NUMERIC(12, 2));
    CREATE TABLE u (k INT, v BIGINT, w TEXT);
    INSERT INTO t VALUES
        (1, 10, 'a', 1.5, true, '2026-01-01 00:00:00', 1.25),
        (2, NULL, 'b', -0.5, false, '2026-01-01 00:00:30', NULL),
        (NULL, 30, NULL, NULL, NULL, NULL, 3.5),
        (2147483647, 9223372036854775807, 'long text', 1e300, true, '2026-01-02 12:00:00', 99999.99);
    INSERT INTO u VALUES (1, 100, 'x'), (2, 200, 'y'), (3, NULL, NULL);
";

/// Decisions drawn from a fuzzer's bytes: the same bytes make the same statement, and bytes
/// that run out choose the first (simplest) option, so every input makes something.
struct Choices<'a> {
    bytes: &'a [u8],
    depth: usize,
}

impl Choices<'_> {
    fn pick(&mut self, options: usize) -> usize {
        match self.bytes.split_first() {
            Some((&byte, rest)) => {
                self.bytes = rest;
                usize::from(byte) % options
            }
            None => 0,
        }
    }

    /// True `in_four` times in four; false once the bytes run out, so recursion ends.
    fn chance(&mut self, in_four: usize) -> bool {
        self.pick(4) >= 4 - in_four
    }

    fn one_of<'b>(&mut self, options: &[&'b str]) -> &'b str {
        options[self.pick(options.len())]
    }

    fn several(&mut self, most: usize, mut make: impl FnMut(&mut Self) -> String) -> Vec<String> {
        let count = 1 + self.pick(most);
        (0..count).map(|_| make(self)).collect()
    }
}

const COLUMNS: &[&str] = &[
    "i", "n", "s", "f", "p", "ts", "d", "k", "v", "w", "x", "t.i", "u.k",
];
const LITERALS: &[&str] = &[
    "0",
    "1",
    "-1",
    "2147483647",
    "-2147483648",
    "9223372036854775807",
    "1.5",
    "0.0",
    "1e308",
    "'text'",
    "''",
    "'2026-01-01'",
    "'1 day'",
    "NULL",
    "TRUE",
    "FALSE",
    "TIMESTAMP '2026-01-01 00:00:00'",
    "INTERVAL '1 minute'",
    "'NaN'",
    "$1",
];
const BINARY: &[&str] = &[
    "+",
    "-",
    "*",
    "/",
    "%",
    "=",
    "<>",
    "<",
    "<=",
    ">",
    ">=",
    "AND",
    "OR",
    "||",
    "LIKE",
    "IS DISTINCT FROM",
];
const TYPES: &[&str] = &[
    "INT",
    "SMALLINT",
    "BIGINT",
    "TEXT",
    "DOUBLE PRECISION",
    "REAL",
    "NUMERIC",
    "NUMERIC(5, 2)",
    "BOOLEAN",
    "TIMESTAMP",
    "DATE",
    "INTERVAL",
    "BYTEA",
    "JSONB",
    "VARCHAR(3)",
];
const FUNCTIONS: &[&str] = &[
    "abs",
    "coalesce",
    "nullif",
    "greatest",
    "least",
    "length",
    "upper",
    "lower",
    "substr",
    "round",
    "floor",
    "sqrt",
    "power",
    "date_trunc",
    "extract",
    "concat",
    "to_char",
    "md5",
    "random",
    "now",
    "generate_series",
];
const AGGREGATES: &[&str] = &[
    "count",
    "sum",
    "avg",
    "min",
    "max",
    "bool_and",
    "bool_or",
    "stddev",
    "var_pop",
    "string_agg",
    "array_agg",
];

/// A scalar expression; deeper levels lean towards leaves.
fn expression(choices: &mut Choices, aggregates: bool) -> String {
    if choices.depth > 6 {
        return leaf(choices);
    }
    choices.depth += 1;
    let made = match choices.pick(14) {
        0..=2 => leaf(choices),
        3 | 4 => format!(
            "({} {} {})",
            expression(choices, aggregates),
            choices.one_of(BINARY),
            expression(choices, aggregates)
        ),
        5 => format!(
            "{}({})",
            choices.one_of(&["-", "NOT ", "+", "~"]),
            expression(choices, aggregates)
        ),
        6 => format!(
            "CAST({} AS {})",
            expression(choices, aggregates),
            choices.one_of(TYPES)
        ),
        7 => {
            let function = choices.one_of(FUNCTIONS);
            let arguments = choices.several(3, |choices| expression(choices, aggregates));
            format!("{function}({})", arguments.join(", "))
        }
        8 => format!(
            "CASE WHEN {} THEN {} ELSE {} END",
            expression(choices, aggregates),
            expression(choices, aggregates),
            expression(choices, aggregates)
        ),
        9 => {
            let items = choices.several(4, |choices| expression(choices, aggregates));
            format!(
                "{} {}IN ({})",
                expression(choices, aggregates),
                if choices.chance(1) { "NOT " } else { "" },
                items.join(", ")
            )
        }
        10 => format!(
            "{} IS {}NULL",
            expression(choices, aggregates),
            if choices.chance(2) { "NOT " } else { "" }
        ),
        11 if aggregates => {
            let distinct = if choices.chance(1) { "DISTINCT " } else { "" };
            let filter = if choices.chance(1) {
                format!(" FILTER (WHERE {})", expression(choices, false))
            } else {
                String::new()
            };
            let aggregate = choices.one_of(AGGREGATES);
            let argument = if aggregate == "count" && choices.chance(2) {
                "*".to_string()
            } else if aggregate == "string_agg" {
                format!("{distinct}{}, ','", expression(choices, false))
            } else {
                format!("{distinct}{}", expression(choices, false))
            };
            format!("{aggregate}({argument}){filter}")
        }
        12 => format!("({})", select(choices)),
        13 => format!(
            "{}EXISTS ({})",
            if choices.chance(1) { "NOT " } else { "" },
            select(choices)
        ),
        _ => leaf(choices),
    };
    choices.depth -= 1;
    made
}

fn leaf(choices: &mut Choices) -> String {
    if choices.chance(2) {
        choices.one_of(COLUMNS).to_string()
    } else {
        choices.one_of(LITERALS).to_string()
    }
}

fn relation(choices: &mut Choices) -> String {
    if choices.depth > 6 {
        return "t".to_string();
    }
    match choices.pick(6) {
        0 | 1 => "t".to_string(),
        2 => "u".to_string(),
        3 => {
            match choices.one_of(&["JOIN", "LEFT JOIN", "RIGHT JOIN", "FULL JOIN", "CROSS JOIN"]) {
                "CROSS JOIN" => "t CROSS JOIN u".to_string(),
                join => format!("t {join} u ON {}", expression(choices, false)),
            }
        }
        4 => {
            choices.depth += 1;
            let inner = select(choices);
            choices.depth -= 1;
            format!("({inner}) AS x")
        }
        _ => format!(
            "generate_series({}, {}) AS x",
            choices.pick(5),
            choices.pick(40)
        ),
    }
}

/// A SELECT, with the clauses each drawn or left out.
fn select(choices: &mut Choices) -> String {
    choices.depth += 1;
    let grouped = choices.chance(1);
    let distinct = if choices.chance(1) { "DISTINCT " } else { "" };
    let items = choices.several(4, |choices| {
        let aggregates = grouped || choices.chance(1);
        expression(choices, aggregates)
    });
    let mut sql = format!("SELECT {distinct}{}", items.join(", "));
    sql += &format!(" FROM {}", relation(choices));
    if choices.chance(2) {
        sql += &format!(" WHERE {}", expression(choices, false));
    }
    if grouped {
        let keys = choices.several(2, |choices| expression(choices, false));
        sql += &format!(" GROUP BY {}", keys.join(", "));
        if choices.chance(1) {
            sql += &format!(" HAVING {}", expression(choices, true));
        }
    }
    if choices.depth < 6 && choices.chance(1) {
        sql += &format!(
            " {} {}",
            choices.one_of(&["UNION", "UNION ALL", "EXCEPT", "INTERSECT"]),
            select(choices)
        );
    } else if choices.chance(1) {
        sql += &format!(" ORDER BY {}", expression(choices, grouped));
        if choices.chance(2) {
            sql += &format!(" LIMIT {}", choices.pick(10));
        }
    }
    choices.depth -= 1;
    sql
}

/// One statement of a generated case: most kinds a user sends.
fn statement(choices: &mut Choices) -> String {
    match choices.pick(8) {
        0..=2 => select(choices),
        3 => format!("CREATE MATERIALIZED VIEW fuzz_view AS {}", select(choices)),
        4 => {
            let rows = choices.several(3, |choices| {
                let values = [0, 1, 2].map(|_| expression(choices, false));
                format!("({})", values.join(", "))
            });
            format!("INSERT INTO u VALUES {}", rows.join(", "))
        }
        5 => format!("DELETE FROM u WHERE {}", expression(choices, false)),
        6 => format!(
            "SELECT * FROM fuzz_view WHERE {}",
            expression(choices, false)
        ),
        _ => format!("EXPLAIN {}", select(choices)),
    }
}

/// Statements built by a grammar from the fuzzer's bytes, several per input so that views see
/// writes after they are built. Errors are expected (the grammar makes ill-typed SQL too); an
/// error must not be a caught panic and the server must go on.
#[test]
fn generated_statements() {
    // The harness is only read by the checks; a failed input ends the test.
    let harness = std::panic::AssertUnwindSafe(Harness::start());
    // How the statements ended (`ok` or the SQLSTATE), printed to show how much of the server
    // the grammar reaches: statements that all fail to parse would test little.
    let outcomes = std::sync::Mutex::new(std::collections::BTreeMap::<String, usize>::new());
    bolero::check!()
        .with_test_time(fuzz_time())
        .for_each(|bytes: &[u8]| {
            let panics = PANICS.load(Ordering::SeqCst);
            let mut choices = Choices { bytes, depth: 0 };
            let statements: Vec<String> = (0..1 + choices.pick(4))
                .map(|_| statement(&mut choices))
                .collect();
            for sql in &statements {
                let outcome = match harness.simple(sql) {
                    Ok(()) => "ok".to_string(),
                    Err(error) => {
                        // Internal errors are not failures of the input, but each is an error
                        // message or SQLSTATE to put right: shown for whoever reads the run.
                        if error.starts_with("XX000") {
                            println!("{sql} => {error}");
                        }
                        error.chars().take(5).collect()
                    }
                };
                *outcomes.lock().unwrap().entry(outcome).or_insert(0) += 1;
            }
            let _ = harness.simple("DROP MATERIALIZED VIEW IF EXISTS fuzz_view");
            let _ = harness.simple("DELETE FROM u WHERE k IS NULL OR k > 3");
            harness.check_alive(panics, &statements);
        });
    println!(
        "generated statements by outcome: {:?}",
        outcomes.lock().unwrap()
    );
}

/// Words of SQL in any order: the parser's error paths, and whatever parses by chance.
#[test]
fn token_soup() {
    const TOKENS: &[&str] = &[
        "SELECT",
        "FROM",
        "WHERE",
        "GROUP",
        "BY",
        "ORDER",
        "(",
        ")",
        ",",
        ";",
        "*",
        "+",
        "-",
        "::",
        "'",
        "\"",
        "$1",
        "1",
        "1.5",
        "e",
        "t",
        "u",
        "i",
        "s",
        "AS",
        "CREATE",
        "TABLE",
        "MATERIALIZED",
        "VIEW",
        "SOURCE",
        "SINK",
        "INSERT",
        "INTO",
        "VALUES",
        "DELETE",
        "UPDATE",
        "SET",
        "NULL",
        "CAST",
        "INT",
        "TEXT",
        "ARRAY",
        "[",
        "]",
        "CASE",
        "WHEN",
        "THEN",
        "END",
        "OVER",
        "PARTITION",
        "WINDOW",
        "TUMBLE",
        "HOP",
        "INTERVAL",
        "'1 second'",
        "SUBSCRIBE",
        "COPY",
        "FETCH",
        "DECLARE",
        "CURSOR",
        "BEGIN",
        "COMMIT",
        "SHOW",
        "EXPLAIN",
        "FLUSH",
        "DROP",
        "IF",
        "EXISTS",
        "WITH",
        "RECURSIVE",
        "UNION",
        "JOIN",
        "ON",
        "USING",
        "LATERAL",
        "E'\\x'",
        "U&'\\0000'",
        "$$",
        "/*",
        "*/",
        "--",
        "\n",
        "\\",
        "\u{0}",
        "é",
        "🙂",
    ];
    // The harness is only read by the checks; a failed input ends the test.
    let harness = std::panic::AssertUnwindSafe(Harness::start());
    bolero::check!()
        .with_test_time(fuzz_time())
        .for_each(|bytes: &[u8]| {
            let panics = PANICS.load(Ordering::SeqCst);
            let sql: Vec<&str> = bytes
                .iter()
                .take(200)
                .map(|&byte| TOKENS[usize::from(byte) % TOKENS.len()])
                .collect();
            let sql = sql.join(" ");
            // Postgres's protocol cannot carry a NUL inside a query string.
            let sql = sql.replace('\u{0}', " ");
            let _ = harness.simple(&sql);
            let _ = harness.simple("DROP MATERIALIZED VIEW IF EXISTS t2; DROP TABLE IF EXISTS t2");
            harness.check_alive(panics, &sql);
        });
}

/// Frontend messages with the protocol's framing and random contents, after a proper startup
/// (or, for some inputs, instead of one): the decoder and the session's handling of Parse,
/// Bind, Execute, Describe, Close, Sync, Flush, COPY data and the rest in any order.
#[test]
fn pgwire_frames() {
    const TAGS: &[u8] = b"QPBEDSHCXFdcfpQPBE";
    let harness = std::panic::AssertUnwindSafe(Harness::start());
    let port = harness.server.port;
    bolero::check!()
        .with_test_time(fuzz_time())
        .for_each(|bytes: &[u8]| {
            let panics = PANICS.load(Ordering::SeqCst);
            let mut choices = Choices { bytes, depth: 0 };
            let with_startup = choices.pick(8) != 0;
            let mut wire = Vec::new();
            while !choices.bytes.is_empty() {
                let tag = TAGS[choices.pick(TAGS.len())];
                let body_length = choices.pick(24);
                let mut body = Vec::new();
                for _ in 0..body_length {
                    // Bytes that make the likely fields: NULs ending strings, small counts,
                    // the `-1` of a NULL parameter, and SQL.
                    match choices.pick(6) {
                        0 => body.push(0),
                        1 => body.extend_from_slice(&[0, 1]),
                        2 => body.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]),
                        3 => body.extend_from_slice(b"SELECT $1\0"),
                        _ => body.push(choices.pick(256) as u8),
                    }
                }
                wire.push(tag);
                // Mostly the right length; sometimes one that lies.
                let length = match choices.pick(10) {
                    0 => choices.pick(256) as u32,
                    _ => body.len() as u32 + 4,
                };
                wire.extend_from_slice(&length.to_be_bytes());
                wire.extend_from_slice(&body);
            }
            harness
                .runtime
                .block_on(exchange(port, with_startup, &wire));
            harness.check_alive(panics, &(with_startup, &wire));
        });
}

/// Sends `wire` on a new connection (after a startup and its ReadyForQuery when
/// `with_startup`), then reads whatever the server answers until it closes or stays quiet.
async fn exchange(port: u16, with_startup: bool, wire: &[u8]) {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let mut answer = vec![0u8; 1 << 16];
    if with_startup {
        let parameters = b"user\0tester\0database\0tributary\0\0";
        let mut startup = Vec::new();
        startup.extend_from_slice(&(8 + parameters.len() as u32).to_be_bytes());
        startup.extend_from_slice(&196608u32.to_be_bytes());
        startup.extend_from_slice(parameters);
        stream.write_all(&startup).await.expect("send startup");
        let mut received = Vec::new();
        while !received.windows(6).any(|window| window == b"Z\0\0\0\x05I") {
            let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut answer))
                .await
                .expect("ReadyForQuery within 10 s")
                .expect("read");
            assert!(read > 0, "the server closed before ReadyForQuery");
            received.extend_from_slice(&answer[..read]);
        }
    }
    // The server may close while this is being written: that is an answer too.
    if stream.write_all(wire).await.is_err() {
        return;
    }
    let _ = stream.shutdown().await;
    let quiet = Duration::from_millis(200);
    while let Ok(Ok(read)) = tokio::time::timeout(quiet, stream.read(&mut answer)).await {
        if read == 0 {
            break;
        }
    }
}
