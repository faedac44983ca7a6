//! What a careless or hostile client sends must not take the server down: each test sends it
//! over the real protocol and then checks the server still answers.

mod common;

use common::TestServer;

/// The SQLSTATE of a failed statement (panics if it succeeded).
async fn sqlstate(client: &tokio_postgres::Client, sql: &str) -> String {
    match client.simple_query(sql).await {
        Ok(_) => panic!("{}...: succeeded", &sql[..sql.len().min(80)]),
        Err(error) => error
            .as_db_error()
            .map(|error| error.code().code().to_string())
            .unwrap_or_else(|| {
                panic!(
                    "{}...: not a server error: {error}",
                    &sql[..sql.len().min(80)]
                )
            }),
    }
}

async fn single_value(client: &tokio_postgres::Client, sql: &str) -> String {
    let rows = client
        .query(sql, &[])
        .await
        .unwrap_or_else(|error| panic!("{}...: {error}", &sql[..sql.len().min(80)]));
    assert_eq!(rows.len(), 1, "{}...", &sql[..sql.len().min(80)]);
    rows[0].get::<_, String>(0)
}

fn sum_of_ones(terms: usize) -> String {
    vec!["1"; terms].join(" + ")
}

/// Long and deep expressions, as the issue found them aborting the process: answered when
/// Postgres answers them, refused with 54001 when too deep, and the session and server go on.
/// The server runs on `tributary::server::runtime()`, the runtime `tributary serve` uses.
#[test]
fn deep_and_long_statements_are_answered_or_refused_and_the_server_goes_on() {
    let runtime = tributary::server::runtime().expect("runtime");
    runtime.block_on(async {
        let directory = std::env::temp_dir().join(format!("tributary-deep-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&directory);
        let server = TestServer::start_with(tributary::Config::durable(&directory))
            .await
            .expect("start");
        let client = server.connect().await;

        // A 2,000-term sum (Postgres answers it, and refuses 5,000), and one just inside the
        // limit.
        for terms in [2_000, 3_900] {
            let sum =
                single_value(&client, &format!("SELECT ({})::text", sum_of_ones(terms))).await;
            assert_eq!(sum, terms.to_string());
        }
        for terms in [4_100, 100_000] {
            assert_eq!(
                sqlstate(&client, &format!("SELECT {}", sum_of_ones(terms))).await,
                "54001",
                "{terms} terms"
            );
        }
        // Set operations chain the same way.
        assert_eq!(
            sqlstate(&client, &vec!["SELECT 1"; 20_000].join(" UNION ALL ")).await,
            "54001"
        );
        // Parentheses and prefix operators are bounded by the parser's own limit.
        let nested = format!("SELECT {}1{}", "(".repeat(300), ")".repeat(300));
        assert_eq!(
            single_value(&client, &format!("SELECT ({nested})::text")).await,
            "1"
        );
        assert_eq!(
            sqlstate(
                &client,
                &format!("SELECT {}1{}", "(".repeat(5_000), ")".repeat(5_000))
            )
            .await,
            "54001"
        );
        assert_eq!(
            sqlstate(&client, &format!("SELECT {}1", "- ".repeat(5_000))).await,
            "54001"
        );

        // Long AND and OR chains become balanced trees and are answered.
        client
            .batch_execute(
                "CREATE TABLE numbers (n INT);
                 INSERT INTO numbers SELECT value::int FROM generate_series(1, 100) AS t(value);",
            )
            .await
            .expect("table");
        let ands: Vec<String> = (0..5_000).map(|i| format!("n <> {}", 1_000 + i)).collect();
        assert_eq!(
            single_value(
                &client,
                &format!(
                    "SELECT count(*)::text FROM numbers WHERE {}",
                    ands.join(" AND ")
                )
            )
            .await,
            "100"
        );
        let ors: Vec<String> = (0..20_000).map(|i| format!("n = {}", i * 7)).collect();
        assert_eq!(
            single_value(
                &client,
                &format!(
                    "SELECT count(*)::text FROM numbers WHERE {}",
                    ors.join(" OR ")
                )
            )
            .await,
            "14"
        );

        // A view over a long expression is maintained and comes back after a restart; one over
        // an expression too deep is refused.
        client
            .batch_execute(&format!(
                "CREATE MATERIALIZED VIEW long_sum AS SELECT sum({}) AS total FROM numbers",
                vec!["n"; 2_000].join(" + ")
            ))
            .await
            .expect("a view over a 2,000-term expression");
        assert_eq!(
            sqlstate(
                &client,
                &format!(
                    "CREATE MATERIALIZED VIEW too_long AS SELECT {} AS total FROM numbers",
                    vec!["n"; 20_000].join(" + ")
                )
            )
            .await,
            "54001"
        );
        client
            .batch_execute("INSERT INTO numbers VALUES (1000)")
            .await
            .expect("insert");
        let total = (5_050 + 1_000) * 2_000;
        assert_eq!(
            single_value(&client, "SELECT total::text FROM long_sum").await,
            total.to_string()
        );
        drop(client);
        server.stop().await;

        let server = TestServer::start_with(tributary::Config::durable(&directory))
            .await
            .expect("restart");
        let client = server.connect().await;
        assert_eq!(
            single_value(&client, "SELECT total::text FROM long_sum").await,
            total.to_string()
        );
        client
            .batch_execute("INSERT INTO numbers VALUES (1)")
            .await
            .expect("insert after the restart");
        assert_eq!(
            single_value(&client, "SELECT total::text FROM long_sum").await,
            (total + 2_000).to_string()
        );
        assert_eq!(
            single_value(&client, "SELECT 'still here'").await,
            "still here"
        );
        drop(client);
        server.stop().await;
        let _ = std::fs::remove_dir_all(&directory);
    });
}
