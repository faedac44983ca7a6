// node-postgres (pg) against a running Tributary: typed values through parameterized queries,
// named prepared statements reused, results in text and binary formats; COPY streams through
// pg-copy-streams and through postgres.js.
//
//     NODE_PATH="$(scripts/node-modules)" node tests/clients/node/client_test.js 6570
//
// Exits non-zero, naming the failing check, on the first difference.

const assert = require("node:assert/strict");
const { Readable } = require("node:stream");
const { pipeline } = require("node:stream/promises");
const { Client } = require("pg");
const copyStreams = require("pg-copy-streams");
// postgres.js 4 is an ES module: require() gives its namespace.
const postgres = require("postgres").default;

async function main() {
  const client = new Client({
    host: "127.0.0.1",
    port: Number(process.argv[2]),
    user: "tester",
    database: "tributary",
  });
  await client.connect();
  await client.query(
    "CREATE TABLE readings (i INT, b BIGINT, n NUMERIC(10, 2), d DOUBLE PRECISION, t TEXT, " +
      "flag BOOLEAN, at TIMESTAMP, at_utc TIMESTAMPTZ, day DATE, span INTERVAL)",
  );
  await client.query(
    "CREATE MATERIALIZED VIEW per_text AS " +
      "SELECT t, count(*) AS n, sum(b) AS total FROM readings GROUP BY t",
  );
  const insert = {
    name: "insert-reading",
    text: "INSERT INTO readings VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
  };
  for (const i of [1, 2, 3]) {
    const result = await client.query({
      ...insert,
      values: [i, 9000000000 + i, "12.50", 2.5 * i, i % 2 ? "odd" : "even", i > 1,
        "2026-01-02 03:04:05", "2026-01-02T03:04:05Z", "2026-01-02", "1 day 02:00:00"],
    });
    assert.equal(result.rowCount, 1, "insert count");
  }

  // Text results: pg parses each type from its text form.
  const text = await client.query({
    name: "select-reading",
    text: "SELECT i, b, n, d, t, flag, at_utc, day, span FROM readings WHERE i = $1",
    values: [1],
  });
  assert.equal(text.rows.length, 1, "one row");
  const row = text.rows[0];
  assert.equal(row.i, 1, "int");
  assert.equal(row.b, "9000000001", "bigint (pg returns int8 as a string)");
  assert.equal(row.n, "12.50", "numeric");
  assert.equal(row.d, 2.5, "double");
  assert.equal(row.t, "odd", "text");
  assert.equal(row.flag, false, "bool");
  assert.equal(row.at_utc.toISOString(), "2026-01-02T03:04:05.000Z", "timestamptz");
  assert.equal(row.span.days, 1, "interval days");
  assert.equal(row.span.hours, 2, "interval hours");
  assert.deepEqual(
    text.fields.map((field) => field.dataTypeID),
    [23, 20, 1700, 701, 25, 16, 1184, 1082, 1186],
    "type OIDs",
  );

  // The same named statement again, then binary results.
  for (const i of [2, 3]) {
    const again = await client.query({ name: "select-reading", values: [i] });
    assert.equal(again.rows[0].i, i, "reused named statement");
  }
  const binary = await client.query({
    text: "SELECT i, d, t, flag FROM readings WHERE i = $1",
    values: [3],
    binary: true,
  });
  assert.equal(binary.rows[0].i, 3, "binary int");
  assert.equal(binary.rows[0].d, 7.5, "binary double");
  assert.equal(binary.rows[0].t, "odd", "binary text");
  assert.equal(binary.rows[0].flag, true, "binary bool");

  const view = await client.query("SELECT t, n, total FROM per_text ORDER BY t");
  assert.deepEqual(
    view.rows.map((r) => [r.t, r.n, r.total]),
    [["even", "1", "9000000002"], ["odd", "2", "18000000004"]],
    "materialized view",
  );

  // A JS array is sent as an array literal in text, untyped: its type comes from the column.
  const any = await client.query("SELECT count(*) AS n FROM readings WHERE i = ANY($1)", [[1, 3, 9]]);
  assert.equal(any.rows[0].n, "2", "= ANY($1) with a JS array");

  // COPY with pg-copy-streams: CSV in, text out.
  const into = client.query(copyStreams.from("COPY readings (i, t) FROM STDIN WITH (FORMAT csv)"));
  await pipeline(Readable.from(["10,ten\n11,", "\"el,even\"\n"]), into);
  assert.equal(into.rowCount, 2, "pg-copy-streams rows in");
  const out = client.query(
    copyStreams.to("COPY (SELECT i, t FROM readings WHERE i >= 10 ORDER BY i) TO STDOUT"),
  );
  assert.equal(await collect(out), "10\tten\n11\tel,even\n", "pg-copy-streams rows out");
  await client.end();

  // COPY with postgres.js: text in, CSV out.
  const port = Number(process.argv[2]);
  const sql = postgres({ host: "127.0.0.1", port, user: "tester", database: "tributary" });
  const writable = await sql`COPY readings (i, t) FROM STDIN`.writable();
  await pipeline(Readable.from(["12\ttwelve\n13\t\\N\n"]), writable);
  const readable = await sql`COPY (SELECT i, t FROM readings WHERE i >= 12 ORDER BY i) TO STDOUT WITH (FORMAT csv)`.readable();
  assert.equal(await collect(readable), "12,twelve\n13,\n", "postgres.js COPY");
  const [{ typed }] = await sql`SELECT count(*) AS typed FROM readings WHERE i = ANY(${[1, 12]}::bigint[])`;
  assert.equal(Number(typed), 2, "postgres.js = ANY(array::bigint[])");
  const [{ count }] = await sql`SELECT count(*) AS count FROM readings WHERE i >= 10`;
  assert.equal(Number(count), 4, "rows after COPY");
  await sql.end();
  console.log("ok");
}

/** Everything a readable stream yields, as text. */
async function collect(stream) {
  const chunks = [];
  for await (const chunk of stream) {
    chunks.push(Buffer.from(chunk));
  }
  return Buffer.concat(chunks).toString();
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
