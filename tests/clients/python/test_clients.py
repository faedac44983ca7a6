"""psycopg 3, SQLAlchemy 2 (on psycopg and on asyncpg) and asyncpg against a running Tributary: typed values in text and
binary formats, server-side prepared statements with parameters, the introspection SQLAlchemy's
inspector (and Superset on top of it) runs, and an asyncpg pool handing a connection back and
out again (its reset: pg_advisory_unlock_all(), CLOSE ALL, UNLISTEN *, RESET ALL).

    test_clients.py --port 6570

Exits non-zero, with the failing check, on the first difference.
"""

import argparse
import asyncio
import datetime
import decimal
import io

import asyncpg
import psycopg
import sqlalchemy
from sqlalchemy import inspect


EXPECTED_ROW = (
    1,
    9_000_000_000,
    decimal.Decimal("12.50"),
    2.5,
    "ada",
    True,
    datetime.datetime(2026, 1, 2, 3, 4, 5),
    datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc),
    datetime.date(2026, 1, 2),
    datetime.timedelta(days=1, hours=2),
)


def check(what, actual, expected):
    if actual != expected:
        raise AssertionError(f"{what}: expected {expected!r}, got {actual!r}")


def psycopg_checks(url):
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(
            "CREATE TABLE readings (i INT, b BIGINT, n NUMERIC(10, 2), d DOUBLE PRECISION, "
            "t TEXT, flag BOOLEAN, at TIMESTAMP, at_utc TIMESTAMPTZ, day DATE, span INTERVAL)"
        )
        connection.execute(
            "CREATE MATERIALIZED VIEW per_text AS "
            "SELECT t, count(*) AS n, sum(b) AS total FROM readings GROUP BY t"
        )
        # Parameters travel separately (extended protocol), typed by psycopg.
        connection.execute(
            "INSERT INTO readings VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            EXPECTED_ROW,
        )
        connection.execute(
            "INSERT INTO readings VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (2, 1, decimal.Decimal("1.00"), -1.0, "bob", False, None, None, None, None),
        )
        for binary in (False, True):
            with connection.cursor(binary=binary) as cursor:
                cursor.execute("SELECT * FROM readings WHERE i = %s", (1,))
                check(f"typed row (binary={binary})", cursor.fetchone(), EXPECTED_ROW)
                # A list is bound as an array (int2[] here, psycopg picks the smallest type).
                cursor.execute("SELECT t FROM readings WHERE i = ANY(%s) ORDER BY t", ([1, 2],))
                check(f"= ANY(list) (binary={binary})", cursor.fetchall(), [("ada",), ("bob",)])
                # prepare=True makes a named server-side statement, reused on the next call.
                for name, count in (("ada", 1), ("bob", 1), ("nobody", None)):
                    cursor.execute(
                        "SELECT n, total FROM per_text WHERE t = %s", (name,), prepare=True
                    )
                    row = cursor.fetchone()
                    check(
                        f"view row for {name} (binary={binary})",
                        row and row[0],
                        count,
                    )
        row = connection.execute("SELECT total FROM per_text WHERE t = 'ada'").fetchone()
        check("sum of bigint is numeric", row, (decimal.Decimal(9_000_000_000),))
        check(
            "server_version",
            connection.info.parameter_status("server_version").split(".")[0],
            "16",
        )
    server_side_cursor(url)
    subscribe(url)
    copy_checks(url)


def jsonb_checks(url):
    """jsonb as drivers use it: psycopg's Jsonb parameters and its parsing of jsonb results
    (text and binary), SQLAlchemy's JSONB column type and its `->>` element access with a bound
    key, asyncpg's jsonb codec, and a materialized view over a jsonb column."""
    from psycopg.types.json import Jsonb

    document = {"name": "ada", "tags": ["x", "y"], "score": 1.5, "nested": {"ok": True}}
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("CREATE TABLE events_jb (id INT, doc JSONB)")
        connection.execute(
            "CREATE MATERIALIZED VIEW tag_counts_jb AS "
            "SELECT jsonb_array_elements_text(doc -> 'tags') AS tag, count(*) AS n "
            "FROM events_jb GROUP BY 1"
        )
        connection.execute("INSERT INTO events_jb VALUES (%s, %s)", (1, Jsonb(document)))
        connection.execute(
            "INSERT INTO events_jb VALUES (%s, %s)", (2, Jsonb({"name": "bob", "tags": ["y"]}))
        )
        for binary in (False, True):
            with connection.cursor(binary=binary) as cursor:
                cursor.execute("SELECT doc FROM events_jb WHERE id = %s", (1,))
                check(f"jsonb result (binary={binary})", cursor.fetchone(), (document,))
                cursor.execute(
                    "SELECT id FROM events_jb WHERE doc @> %s ORDER BY id",
                    (Jsonb({"tags": ["y"]}),),
                )
                check(f"jsonb @> parameter (binary={binary})", cursor.fetchall(), [(1,), (2,)])
                cursor.execute(
                    "SELECT doc ->> %s FROM events_jb WHERE id = %s", ("name", 2)
                )
                check(f"->> with a bound key (binary={binary})", cursor.fetchone(), ("bob",))
        rows = connection.execute("SELECT tag, n FROM tag_counts_jb ORDER BY tag").fetchall()
        check("view over jsonb", rows, [("x", 1), ("y", 2)])

    from sqlalchemy.dialects.postgresql import JSONB

    engine = sqlalchemy.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        metadata = sqlalchemy.MetaData()
        events = sqlalchemy.Table(
            "events_jb",
            metadata,
            sqlalchemy.Column("id", sqlalchemy.Integer),
            sqlalchemy.Column("doc", JSONB),
        )
        with engine.begin() as connection:
            connection.execute(events.insert(), [{"id": 3, "doc": {"name": "cy", "tags": []}}])
            names = connection.execute(
                sqlalchemy.select(events.c.doc["name"].astext)
                .where(events.c.doc["name"].astext != "ada")
                .order_by(events.c.id)
            ).scalars().all()
            check("SQLAlchemy JSONB ->>", names, ["bob", "cy"])
            found = connection.execute(
                sqlalchemy.select(events.c.id).where(events.c.doc.contains({"name": "cy"}))
            ).scalars().all()
            check("SQLAlchemy JSONB contains", found, [3])
    finally:
        engine.dispose()


async def asyncpg_jsonb_checks(url):
    import json

    connection = await asyncpg.connect(url)
    try:
        # Without a codec asyncpg gives jsonb as its text; with one, as Python values.
        text = await connection.fetchval("SELECT doc FROM events_jb WHERE id = $1", 2)
        check("asyncpg jsonb text", text, '{"name": "bob", "tags": ["y"]}')
        await connection.set_type_codec(
            "jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
        )
        value = await connection.fetchval(
            "SELECT doc -> 'tags' FROM events_jb WHERE doc ->> 'name' = $1", "ada"
        )
        check("asyncpg jsonb codec", value, ["x", "y"])
        await connection.execute(
            "INSERT INTO events_jb VALUES ($1, $2)", 4, {"name": "dee", "tags": ["x"]}
        )
        count = await connection.fetchval(
            "SELECT n FROM tag_counts_jb WHERE tag = $1", "x"
        )
        check("asyncpg jsonb insert reaches the view", count, 2)
    finally:
        await connection.close()


def server_side_cursor(url):
    """A named cursor is DECLARE ... CURSOR FOR with the parameters bound, then FETCH FORWARD."""
    with psycopg.connect(url) as connection:
        with connection.cursor(name="by_flag") as cursor:
            cursor.itersize = 1
            cursor.execute("SELECT i, t FROM readings WHERE flag = %s ORDER BY i", (True,))
            check("server-side cursor", list(cursor), [(1, "ada")])
        connection.commit()


def subscribe(url):
    """COPY (SUBSCRIBE ...) TO STDOUT: the view's rows, then a change made meanwhile on another
    connection, then a cancel ends it with 57014 and the connection goes on."""
    with psycopg.connect(url, autocommit=True) as connection, psycopg.connect(
        url, autocommit=True
    ) as writer:
        seen = []
        try:
            with connection.cursor() as cursor:
                with cursor.copy("COPY (SUBSCRIBE TO per_text) TO STDOUT") as copy:
                    for row in copy.rows():
                        seen.append(row[1:])
                        if len(seen) == 2:
                            writer.execute("INSERT INTO readings (i, b, t) VALUES (3, 5, 'cy')")
                        if len(seen) == 3:
                            connection.cancel_safe()
            raise AssertionError("the subscription ended without a cancel")
        except psycopg.errors.QueryCanceled:
            pass
        check(
            "subscription rows",
            seen,
            [("1", "ada", "1", "9000000000"), ("1", "bob", "1", "1"), ("1", "cy", "1", "5")],
        )
        row = connection.execute("SELECT count(*) FROM per_text").fetchone()
        check("connection after the subscription", row, (3,))
        connection.execute("DELETE FROM readings WHERE t = 'cy'")


def copy_checks(url):
    """COPY with psycopg: rows written in text and in binary, read back as CSV; a view takes a
    whole COPY as one change, and a bad row leaves the table as it was."""
    with psycopg.connect(url, autocommit=True) as connection, connection.cursor() as cursor:
        cursor.execute("CREATE TABLE loads (k INT, name TEXT, amount NUMERIC(8, 2), at TIMESTAMP)")
        cursor.execute(
            "CREATE MATERIALIZED VIEW load_totals AS "
            "SELECT count(*) AS n, sum(amount) AS total FROM loads"
        )
        start = datetime.datetime(2026, 1, 1)
        with cursor.copy("COPY loads (k, name, amount, at) FROM STDIN") as copy:
            for k in range(1, 1001):
                name = f"name {k}" if k % 100 else None
                amount = decimal.Decimal(k) / 4
                copy.write_row((k, name, amount, start + datetime.timedelta(minutes=k)))
        with cursor.copy("COPY loads FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["int4", "text", "numeric", "timestamp"])
            copy.write_row((1001, "tab\tand\nnewline", decimal.Decimal("0.5"), None))
        totals = cursor.execute("SELECT n, total FROM load_totals").fetchone()
        check("view after COPY", totals, (1001, decimal.Decimal("125125.50")))
        out = "COPY (SELECT k, name, amount, at FROM loads WHERE k IN (100, 101, 1001) ORDER BY k) "
        with cursor.copy(out + "TO STDOUT WITH (FORMAT csv, HEADER)") as copy:
            data = b"".join(bytes(chunk) for chunk in copy)
        check(
            "COPY TO STDOUT as CSV",
            data,
            b"k,name,amount,at\n100,,25.00,2026-01-01 01:40:00\n"
            b"101,name 101,25.25,2026-01-01 01:41:00\n"
            b'1001,"tab\tand\nnewline",0.50,\n',
        )
        try:
            with cursor.copy("COPY loads (k) FROM STDIN") as copy:
                copy.write(b"2000\nnope\n")
            raise AssertionError("COPY accepted a row that is not an integer")
        except psycopg.errors.InvalidTextRepresentation:
            pass
        check("rows after a failed COPY", cursor.execute("SELECT count(*) FROM loads").fetchone(), (1001,))


def pgcli_completion_checks(url):
    """The queries pgcli's completer refreshes with: relations by kind (`relkind = ANY(%s)`, a
    text[] parameter against a "char" column) and columns with their type names."""
    with psycopg.connect(url, autocommit=True) as connection:
        relations = connection.execute(
            "SELECT n.nspname schema_name, c.relname table_name FROM pg_catalog.pg_class c "
            "LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind = ANY(%s) ORDER BY 1, 2",
            (["m"],),
        ).fetchall()
        check("pgcli materialized views", [name for _, name in relations], ["load_totals", "per_text"])
        columns = connection.execute(
            "SELECT nsp.nspname schema_name, cls.relname table_name, att.attname column_name, "
            "att.atttypid::regtype::text type_name FROM pg_catalog.pg_attribute att "
            "INNER JOIN pg_catalog.pg_class cls ON att.attrelid = cls.oid "
            "INNER JOIN pg_catalog.pg_namespace nsp ON cls.relnamespace = nsp.oid "
            "WHERE cls.relkind = ANY(%s) AND NOT att.attisdropped AND att.attnum > 0 "
            "AND cls.relname = 'readings' ORDER BY 1, 2, att.attnum",
            (["r", "p", "f"],),
        ).fetchall()
        check(
            "pgcli column types",
            [type_name for _, _, _, type_name in columns][:4],
            ["integer", "bigint", "numeric", "double precision"],
        )


def sqlalchemy_checks(url):
    engine = sqlalchemy.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as connection:
        connection.execute(sqlalchemy.text("CREATE VIEW bobs AS SELECT i, t FROM readings WHERE t = 'bob'"))
    inspector = inspect(engine)
    check("schemas", "public" in inspector.get_schema_names(), True)
    check("tables", sorted(inspector.get_table_names()), ["loads", "readings"])
    check("views", inspector.get_view_names(), ["bobs"])
    check(
        "materialized views",
        sorted(inspector.get_materialized_view_names()),
        ["load_totals", "per_text"],
    )
    columns = {column["name"]: column for column in inspector.get_columns("readings")}
    check(
        "column names",
        list(columns),
        ["i", "b", "n", "d", "t", "flag", "at", "at_utc", "day", "span"],
    )
    check("INT column", type(columns["i"]["type"]).__name__, "INTEGER")
    check("NUMERIC column", str(columns["n"]["type"]), "NUMERIC(10, 2)")
    check("TIMESTAMPTZ column", columns["at_utc"]["type"].timezone, True)
    view_columns = [column["name"] for column in inspector.get_columns("per_text")]
    check("materialized view columns", view_columns, ["t", "n", "total"])
    readings = sqlalchemy.Table("readings", sqlalchemy.MetaData(), autoload_with=engine)
    query = (
        sqlalchemy.select(readings.c.t, readings.c.b)
        .where(readings.c.i > sqlalchemy.bindparam("low"))
        .order_by(readings.c.t)
    )
    with engine.connect() as connection:
        rows = connection.execute(query, {"low": 0}).all()
    check("Core query", [tuple(row) for row in rows], [("ada", 9_000_000_000), ("bob", 1)])

    # Keys declared the way SQLAlchemy's DDL declares them, enforced and reflected as on Postgres.
    metadata = sqlalchemy.MetaData()
    accounts = sqlalchemy.Table(
        "accounts",
        metadata,
        sqlalchemy.Column("region", sqlalchemy.Text, primary_key=True),
        sqlalchemy.Column("id", sqlalchemy.BigInteger, primary_key=True, autoincrement=False),
        sqlalchemy.Column("email", sqlalchemy.Text, unique=True),
    )
    # An Integer primary key is SERIAL in SQLAlchemy's DDL; its ids come back by RETURNING.
    notes = sqlalchemy.Table(
        "notes",
        metadata,
        sqlalchemy.Column("id", sqlalchemy.Integer, primary_key=True),
        sqlalchemy.Column("body", sqlalchemy.Text),
    )
    metadata.create_all(engine)
    with engine.begin() as connection:
        ids = [
            connection.execute(notes.insert().values(body=body)).inserted_primary_key[0]
            for body in ("x", "y")
        ]
    check("serial ids", ids, [1, 2])
    with engine.begin() as connection:
        connection.execute(accounts.insert(), [{"region": "eu", "id": 1, "email": "a@x"}])
    try:
        with engine.begin() as connection:
            connection.execute(accounts.insert(), [{"region": "eu", "id": 1, "email": "b@x"}])
        raise AssertionError("a duplicate primary key was accepted")
    except sqlalchemy.exc.IntegrityError as error:
        check("duplicate key SQLSTATE", error.orig.sqlstate, "23505")
    inspector = inspect(engine)
    check(
        "primary key",
        inspector.get_pk_constraint("accounts"),
        {
            "constrained_columns": ["region", "id"],
            "name": "accounts_pkey",
            "comment": None,
            "dialect_options": {"postgresql_include": []},
        },
    )
    check(
        "unique constraints",
        [(unique["name"], unique["column_names"]) for unique in inspector.get_unique_constraints("accounts")],
        [("accounts_email_key", ["email"])],
    )
    check(
        "indexes",
        [(index["name"], index["column_names"], index["unique"]) for index in inspector.get_indexes("accounts")],
        [("accounts_email_key", ["email"], True)],
    )
    reflected = sqlalchemy.Table("accounts", sqlalchemy.MetaData(), autoload_with=engine)
    check("reflected primary key", [column.name for column in reflected.primary_key], ["region", "id"])


async def sqlalchemy_asyncpg_checks(url):
    """SQLAlchemy 2 on asyncpg: connecting sets a json codec (asyncpg reads pg_type.typtype as
    a "char"), and the inspector's key and index queries bind ints and oids as parameters."""
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(url.replace("postgresql://", "postgresql+asyncpg://"))
    try:
        async with engine.connect() as connection:

            def inspect_readings(sync_connection):
                inspector = inspect(sync_connection)
                return (
                    [column["name"] for column in inspector.get_columns("readings")][:3],
                    inspector.get_pk_constraint("readings")["constrained_columns"],
                    inspector.get_foreign_keys("readings"),
                    inspector.get_indexes("readings"),
                    inspector.get_unique_constraints("readings"),
                )

            found = await connection.run_sync(inspect_readings)
            check("SQLAlchemy asyncpg inspector", found, (["i", "b", "n"], [], [], [], []))
    finally:
        await engine.dispose()


async def asyncpg_checks(url):
    connection = await asyncpg.connect(url)
    try:
        # asyncpg prepares every statement and reads results in binary.
        row = await connection.fetchrow(
            "SELECT i, b, n, d, t, flag, at, at_utc, day, span FROM readings WHERE t = $1", "ada"
        )
        check("asyncpg typed row", tuple(row), EXPECTED_ROW)
        spans = await connection.fetchval(
            "SELECT 2 * INTERVAL '1 minute' + INTERVAL '1 day 01:00:00'"
        )
        check("asyncpg interval arithmetic", spans, datetime.timedelta(days=1, hours=1, minutes=2))
        formatted = await connection.fetchval(
            "SELECT to_char(at, 'YYYY-MM-DD HH24:MI') FROM readings WHERE t = $1", "ada"
        )
        check("asyncpg to_char", formatted, "2026-01-02 03:04")
        # An array parameter makes asyncpg introspect the array type with its own catalog
        # query (recursive, with an oid[] parameter) before it can bind the list.
        keys = await connection.fetch("SELECT i FROM readings WHERE i = ANY($1) ORDER BY i", [2, 9])
        check("asyncpg = ANY($1)", [row["i"] for row in keys], [2])
        ordered = await connection.fetchval("SELECT array_agg(i ORDER BY i) FROM readings")
        check("asyncpg array result", ordered, [1, 2])
        # asyncpg describes the table's columns, then sends the records as binary COPY.
        copied = await connection.copy_records_to_table(
            "loads",
            records=[(2001, "async", decimal.Decimal("1.25"), datetime.datetime(2026, 2, 1))],
            columns=["k", "name", "amount", "at"],
        )
        check("asyncpg copy_records_to_table", copied, "COPY 1")
        output = io.BytesIO()
        copied = await connection.copy_from_query(
            "SELECT k, name, at FROM loads WHERE k > 2000", output=output, format="csv"
        )
        check("asyncpg copy_from_query", (copied, output.getvalue()), ("COPY 1", b"2001,async,2026-02-01 00:00:00\n"))
    finally:
        await connection.close()
    pool = await asyncpg.create_pool(url, min_size=1, max_size=1)
    try:
        for _ in range(2):
            # The second acquire gets the connection the first released and reset.
            async with pool.acquire() as pooled:
                count = await pooled.fetchval("SELECT count(*) FROM readings")
                check("asyncpg pooled count", count, 2)
    finally:
        await pool.close()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    arguments = parser.parse_args()
    url = f"postgresql://tester@127.0.0.1:{arguments.port}/tributary"
    psycopg_checks(url)
    sqlalchemy_checks(url)
    pgcli_completion_checks(url)
    asyncio.run(asyncpg_checks(url))
    asyncio.run(sqlalchemy_asyncpg_checks(url))
    jsonb_checks(url)
    asyncio.run(asyncpg_jsonb_checks(url))
    print("ok")


if __name__ == "__main__":
    main()
