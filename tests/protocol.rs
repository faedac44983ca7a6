//! Wire-level checks no driver exposes: after an error in the extended protocol the server
//! discards messages until Sync, then answers normally; malformed input never takes the server
//! down.

mod common;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends a cancel request and returns once the server has acted on it: the server closes the
/// request's connection only after handling it, so the test can tell a cancel that was
/// forgotten from one still on its way (tokio-postgres's own `cancel_query` returns as soon
/// as the request is written).
async fn cancel_and_wait(port: u16, cancel: &tokio_postgres::CancelToken) {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect for the cancel request");
    cancel
        .cancel_query_raw(&mut stream, tokio_postgres::NoTls)
        .await
        .expect("send the cancel request");
    let mut rest = Vec::new();
    stream
        .read_to_end(&mut rest)
        .await
        .expect("the server closes the cancel connection");
}

fn message(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut bytes = vec![tag];
    bytes.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    bytes.extend_from_slice(body);
    bytes
}

fn cstring(text: &str) -> Vec<u8> {
    let mut bytes = text.as_bytes().to_vec();
    bytes.push(0);
    bytes
}

fn parse(name: &str, sql: &str) -> Vec<u8> {
    let mut body = cstring(name);
    body.extend(cstring(sql));
    body.extend_from_slice(&0i16.to_be_bytes());
    message(b'P', &body)
}

fn bind(statement: &str) -> Vec<u8> {
    let mut body = cstring("");
    body.extend(cstring(statement));
    body.extend_from_slice(&0i16.to_be_bytes()); // parameter formats
    body.extend_from_slice(&0i16.to_be_bytes()); // parameters
    body.extend_from_slice(&0i16.to_be_bytes()); // result formats
    message(b'B', &body)
}

fn execute() -> Vec<u8> {
    let mut body = cstring("");
    body.extend_from_slice(&0i32.to_be_bytes());
    message(b'E', &body)
}

fn sync() -> Vec<u8> {
    message(b'S', &[])
}

async fn connect(port: u16) -> TcpStream {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let mut body = 196608i32.to_be_bytes().to_vec();
    body.extend(cstring("user"));
    body.extend(cstring("tester"));
    body.push(0);
    let mut startup = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    startup.extend(body);
    stream.write_all(&startup).await.expect("startup");
    let tags = read_until_ready(&mut stream).await;
    assert_eq!(tags.first(), Some(&b'R'), "authentication ok first");
    stream
}

/// Reads backend messages up to and including ReadyForQuery; returns their tags.
async fn read_until_ready(stream: &mut TcpStream) -> Vec<u8> {
    let mut tags = Vec::new();
    loop {
        let tag = stream.read_u8().await.expect("message tag");
        let length = stream.read_i32().await.expect("message length");
        let mut body = vec![0; (length - 4) as usize];
        stream.read_exact(&mut body).await.expect("message body");
        tags.push(tag);
        if tag == b'Z' {
            return tags;
        }
    }
}

/// A new connection is answered: whatever the test sent did not take the server down.
async fn assert_still_serves(server: &common::TestServer) {
    let client = server.connect().await;
    let row = client
        .query_one("SELECT 41 + 1", &[])
        .await
        .expect("server still serves");
    assert_eq!(row.get::<_, i64>(0), 42);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_discards_the_rest_until_sync() {
    let server = common::TestServer::start().await;
    let mut stream = connect(server.port).await;
    let mut batch = Vec::new();
    batch.extend(parse("", "SELECT * FROM missing"));
    batch.extend(bind(""));
    batch.extend(execute());
    // These follow the failed Parse before Sync: the server must skip them.
    batch.extend(parse("", "SELECT 1"));
    batch.extend(bind(""));
    batch.extend(execute());
    batch.extend(sync());
    stream.write_all(&batch).await.expect("send");
    assert_eq!(read_until_ready(&mut stream).await, vec![b'E', b'Z']);

    // After Sync the connection works: ParseComplete, BindComplete, DataRow, CommandComplete.
    let mut batch = Vec::new();
    batch.extend(parse("named", "SELECT 1"));
    batch.extend(bind("named"));
    batch.extend(execute());
    batch.extend(sync());
    stream.write_all(&batch).await.expect("send");
    assert_eq!(
        read_until_ready(&mut stream).await,
        vec![b'1', b'2', b'D', b'C', b'Z']
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_closes_one_connection_and_spares_the_server() {
    let server = common::TestServer::start().await;
    let mut bad = TcpStream::connect(("127.0.0.1", server.port))
        .await
        .expect("connect");
    bad.write_all(&[0, 0, 0, 8, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3])
        .await
        .expect("send garbage");
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        bad.read_to_end(&mut sink),
    )
    .await;
    assert_still_serves(&server).await;
}

/// Messages whose length or contents lie (found by `tests/fuzz.rs`: pgwire's decoders panicked
/// on each) are answered with a FATAL 08P01 and a closed connection, and nothing panics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_that_lie_about_themselves_are_refused() {
    let server = common::TestServer::start().await;
    let mut lying_bind = cstring("");
    lying_bind.extend(cstring(""));
    lying_bind.extend_from_slice(&0i16.to_be_bytes());
    lying_bind.extend_from_slice(&1i16.to_be_bytes()); // one parameter, whose length says 9
    lying_bind.extend_from_slice(&9i32.to_be_bytes());
    lying_bind.extend_from_slice(b"ab");
    let cases: [(&str, Vec<u8>); 4] = [
        ("a length of 0", b"E\0\0\0\0".to_vec()),
        ("a password message of length 0", b"p\0\0\0\0".to_vec()),
        (
            "a parameter past the message's end",
            message(b'B', &lying_bind),
        ),
        ("a Sync with a body", message(b'S', &[1, 2, 3, 4])),
    ];
    for (case, bytes) in cases {
        let mut stream = connect(server.port).await;
        stream.write_all(&bytes).await.expect("send");
        let mut answer = Vec::new();
        tokio::time::timeout(
            std::time::Duration::from_secs(10),
            stream.read_to_end(&mut answer),
        )
        .await
        .unwrap_or_else(|_| panic!("{case}: the connection stays open"))
        .expect("read the answer");
        assert_eq!(answer.first(), Some(&b'E'), "{case}: an ErrorResponse");
        let text = String::from_utf8_lossy(&answer);
        assert!(
            text.contains("FATAL") && text.contains("08P01"),
            "{case}: {text}"
        );
    }
    assert_still_serves(&server).await;
}

/// A query that would run for minutes: counting a hundred billion generated rows.
const ENDLESS_QUERY: &str = "SELECT count(*) FROM generate_series(1, 100000000000) AS g(x)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_request_stops_the_running_query_and_spares_the_session() {
    let server = common::TestServer::start().await;
    let client = server.connect().await;
    client
        .batch_execute("CREATE TABLE t (x INT); INSERT INTO t VALUES (1), (2)")
        .await
        .expect("setup");
    let cancel = client.cancel_token();
    // The query goes through the extended protocol (Parse/Bind/Execute); the cancel request
    // arrives on a connection of its own, as every driver sends it.
    let running = tokio::spawn(async move {
        let outcome = client.query(ENDLESS_QUERY, &[]).await;
        (client, outcome)
    });
    // A cancel request that arrives before the query starts is forgotten (as in Postgres), so
    // it is sent every half second until the query stops; the test gives up after a minute.
    let mut running = running;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    let (client, outcome) = loop {
        tokio::select! {
            finished = &mut running => break finished.expect("query task"),
            _ = tokio::time::sleep(std::time::Duration::from_millis(500)) => {
                assert!(tokio::time::Instant::now() < deadline, "the query was never canceled");
                cancel_and_wait(server.port, &cancel).await;
            }
        }
    };
    let error = outcome.expect_err("a canceled query fails");
    let database_error = error.as_db_error().expect("an error from the server");
    assert_eq!(database_error.code().code(), "57014");
    assert_eq!(
        database_error.message(),
        "canceling statement due to user request"
    );
    // The session goes on, and a cancel request with nothing running is forgotten.
    cancel_and_wait(server.port, &cancel).await;
    let rows = client
        .simple_query("SELECT count(*) FROM t")
        .await
        .expect("the next query runs");
    let count = rows.iter().find_map(|message| match message {
        tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_string),
        _ => None,
    });
    assert_eq!(count.as_deref(), Some("2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_request_with_the_wrong_key_cancels_nothing() {
    let server = common::TestServer::start().await;
    let client = server.connect().await;
    let other = server.connect().await;
    // The other connection's key cannot stop this connection's query.
    let foreign = other.cancel_token();
    let running = tokio::spawn(async move {
        client
            .query(
                "SELECT count(*) FROM generate_series(1, 3000000) AS g(x)",
                &[],
            )
            .await
            .map(|rows| rows[0].get::<_, i64>(0))
    });
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    cancel_and_wait(server.port, &foreign).await;
    let count = running
        .await
        .expect("query task")
        .expect("the query is not canceled");
    assert_eq!(count, 3_000_000);
}
