//! psql, the real client, against the real server: the `\d` family, `\x` and `\timing` read the
//! catalogs as psql 15 queries them. The script and the output it must print are in
//! `tests/clients/psql/`; `TRIBUTARY_BLESS=1` rewrites the expected output after a deliberate
//! change (review the diff).

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::TestServer;

fn psql(port: u16, arguments: &[&str]) -> std::process::Output {
    Command::new("psql")
        .args([
            "-X",
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "tester",
        ])
        .args(["-d", "tributary", "-v", "ON_ERROR_STOP=1"])
        .args(arguments)
        .env("PGTZ", "UTC")
        .output()
        .expect("psql must be installed: scripts/postgres start installs it")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_describe_commands_show_every_relation_kind() {
    let server = TestServer::start().await;
    let directory = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients/psql");
    let script = directory.join("describe.sql");
    let expected_path = directory.join("describe.expected");
    let port = server.port;
    let output =
        tokio::task::spawn_blocking(move || psql(port, &["-f", &script.display().to_string()]))
            .await
            .expect("psql ran");
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    assert!(output.status.success(), "psql failed: {stderr}\n{stdout}");
    assert!(stderr.is_empty(), "psql reported: {stderr}");
    if std::env::var("TRIBUTARY_BLESS").is_ok() {
        std::fs::write(&expected_path, &stdout).expect("write the expected output");
    }
    let expected = std::fs::read_to_string(&expected_path).expect("expected output");
    assert_eq!(stdout, expected, "psql printed something else");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timing_prints_the_duration_of_each_statement() {
    let server = TestServer::start().await;
    let port = server.port;
    let output = tokio::task::spawn_blocking(move || {
        psql(port, &["-c", "\\timing on", "-c", "SELECT 1 AS one"])
    })
    .await
    .expect("psql ran");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("Timing is on."), "{stdout}");
    assert!(stdout.contains(" one \n-----\n   1\n(1 row)"), "{stdout}");
    assert!(stdout.contains("Time: "), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_cancels_the_running_query() {
    let server = TestServer::start().await;
    let port = server.port;
    let output = tokio::task::spawn_blocking(move || {
        let child = Command::new("psql")
            .args(["-X", "-h", "127.0.0.1", "-p", &port.to_string()])
            .args(["-U", "tester", "-d", "tributary"])
            .args([
                "-c",
                "SELECT count(*) FROM generate_series(1, 100000000000) AS g(x)",
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("psql must be installed: scripts/postgres start installs it");
        std::thread::sleep(std::time::Duration::from_secs(1));
        // What psql does on Ctrl-C: send a cancel request on a second connection.
        let interrupted = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .expect("kill");
        assert!(interrupted.success());
        child.wait_with_output().expect("psql ends")
    })
    .await
    .expect("psql ran");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    // psql 15 and later say "Cancel request sent" first.
    assert!(
        stderr.ends_with("ERROR:  canceling statement due to user request\n"),
        "{stderr}"
    );
    let after = tokio::task::spawn_blocking(move || psql(port, &["-c", "SELECT 1 AS one"]))
        .await
        .expect("psql ran");
    assert!(after.status.success(), "the server still answers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_subscribe_prints_changes_until_ctrl_c() {
    let server = TestServer::start().await;
    let writer = server.connect().await;
    writer
        .batch_execute(
            "CREATE TABLE t (k TEXT, v INT);
             INSERT INTO t VALUES ('a', 1), ('b', 2), ('a', 3);
             CREATE MATERIALIZED VIEW m AS SELECT k, sum(v) AS total FROM t GROUP BY k",
        )
        .await
        .expect("setup");
    let port = server.port;
    let child = Command::new("psql")
        .args(["-X", "-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-U", "tester", "-d", "tributary"])
        .args(["-c", "COPY (SUBSCRIBE TO m) TO STDOUT"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("psql must be installed: scripts/postgres start installs it");
    // Time for psql to connect and subscribe; changes made before would show as snapshot rows
    // only, which the line count below catches.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    writer
        .batch_execute("INSERT INTO t VALUES ('b', 10); DELETE FROM t WHERE k = 'a'")
        .await
        .expect("changes");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let interrupted = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(interrupted.success());
    let output = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .expect("psql ran")
        .expect("psql ends");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.ends_with("ERROR:  canceling statement due to user request\n"),
        "{stderr}"
    );
    // Folding the printed changes (epoch, diff, k, total) gives the view as it is now.
    let mut folded = std::collections::BTreeMap::<String, i64>::new();
    for line in stdout.lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        assert_eq!(fields.len(), 4, "{line}");
        let diff: i64 = fields[1].parse().expect("diff");
        *folded.entry(fields[2..].join(" ")).or_default() += diff;
    }
    folded.retain(|_, count| *count != 0);
    let expected: std::collections::BTreeMap<String, i64> = [("b 12".to_string(), 1)].into();
    assert_eq!(folded, expected, "{stdout}");
    assert!(
        stdout.lines().count() >= 4,
        "snapshot and changes: {stdout}"
    );
}
