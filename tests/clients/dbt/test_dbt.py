"""dbt-postgres against Tributary: `dbt build` of a project with a seed, a table, a view, a
materialized view, an incremental model and data tests, run three times as a team runs it (the
later runs swap relations with ALTER ... RENAME, reload the seed with TRUNCATE, drop the old
relations with CASCADE, and merge the incremental model with DELETE ... IN (SELECT ...)). Then
the models hold what dbt built, and the materialized view keeps up with a later write.

    test_dbt.py --port 6875

Prints `ok` and exits 0, or raises naming the failing check.
"""

import argparse
import os
import pathlib
import tempfile
import time

os.environ["DBT_SEND_ANONYMOUS_USAGE_STATS"] = "false"

import psycopg2  # noqa: E402  (installed with dbt-postgres)
from dbt.cli.main import dbtRunner  # noqa: E402

project = pathlib.Path(__file__).resolve().parent


def build(work, *extra):
    arguments = [
        "build",
        "--project-dir", str(project),
        "--profiles-dir", str(project),
        "--target-path", str(work / "target"),
        "--log-path", str(work / "logs"),
        *extra,
    ]
    result = dbtRunner().invoke(arguments)
    if not result.success:
        log = (work / "logs" / "dbt.log").read_text(errors="replace")
        raise AssertionError(f"dbt {' '.join(extra) or 'build'} failed: {result.exception}\n{log[-6000:]}")


def rows(cursor, query):
    cursor.execute(query)
    return [tuple(row) for row in cursor.fetchall()]


def expect(cursor, query, expected):
    found = rows(cursor, query)
    assert found == expected, f"{query}: expected {expected}, found {found}"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    port = parser.parse_args().port
    os.environ["TRIBUTARY_PORT"] = str(port)
    with tempfile.TemporaryDirectory() as directory:
        work = pathlib.Path(directory)
        # The first build creates everything; the second replaces every model in place; the
        # third adds an order, which the incremental model merges in.
        build(work)
        build(work)
        build(work, "--vars", "{more_orders: true}")

    connection = psycopg2.connect(host="127.0.0.1", port=port, user="tributary", dbname="tributary")
    connection.autocommit = True
    cursor = connection.cursor()
    expect(cursor, "SELECT id, customer_id, amount FROM big_orders ORDER BY id",
           [(1, 1, 10), (2, 2, 20), (4, 3, 40)])
    expect(cursor, "SELECT country, orders, total FROM country_totals ORDER BY country",
           [("DE", 1, 20), ("NL", 3, 55)])
    expect(cursor, "SELECT name, total FROM customer_totals ORDER BY name",
           [("Ann", 15), ("Bob", 20), ("Cat", 40)])
    expect(cursor, "SELECT id, name, country FROM customers ORDER BY id",
           [(1, "Ann", "NL"), (2, "Bob", "DE"), (3, "Cat", "NL")])
    # No backup or temporary relation is left behind. The incremental model's temporary
    # tables go when dbt's connection ends, which the server notices a moment after dbt returns.
    leftovers_query = "SELECT relname FROM pg_class WHERE relname LIKE '%dbt%' ORDER BY 1"
    deadline = time.monotonic() + 10
    while rows(cursor, leftovers_query) and time.monotonic() < deadline:
        time.sleep(0.05)
    expect(cursor, leftovers_query, [])
    # The materialized view dbt made is maintained: a write shows up without a refresh.
    cursor.execute("INSERT INTO orders VALUES (5, 2, 7)")
    expect(cursor, "SELECT country, orders, total FROM country_totals ORDER BY country",
           [("DE", 2, 27), ("NL", 3, 55)])
    connection.close()
    print("ok")


if __name__ == "__main__":
    main()
