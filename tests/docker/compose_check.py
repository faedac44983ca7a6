"""docker-compose.yml end to end: with `docker-compose up` running (scripts/compose-check starts
it), the seed pipeline runs inside the compose network and is checked from the host.

Produces the seed's messages to the published broker port, creates the source (broker
kafka:19092, as the README says), view and sink from sql/seed_pipeline.sql over psql's port, and
checks that the view and the sink's topic hold exactly the expected sum and avg per key; then
restarts the Tributary container (its data volume keeps the catalog and checkpoints), produces
more and checks both again.

    compose_check.py [--count 20000]
"""

import argparse
import decimal
import pathlib
import subprocess
import sys
import time

import psycopg

root = pathlib.Path(__file__).resolve().parents[2]
python = sys.executable
keys = 100


def expected(count):
    """Sum and avg per key of messages 0..count as tests/kafka/produce.py makes them."""
    sums = {}
    counts = {}
    for i in range(count):
        key = i % keys
        sums[key] = sums.get(key, 0) + (i * 7) % 1000
        counts[key] = counts.get(key, 0) + 1
    return {key: (sums[key], decimal.Decimal(sums[key]) / counts[key]) for key in sums}


def produce(start, count):
    subprocess.run(
        [python, root / "tests/kafka/produce.py", "--bootstrap", "127.0.0.1:9092",
         "--topic", "test_topic", "--start", str(start), "--count", str(count), "--keys", str(keys)],
        check=True,
    )


def connect(deadline_seconds=120):
    deadline = time.monotonic() + deadline_seconds
    while True:
        try:
            return psycopg.connect(
                "host=127.0.0.1 port=6570 user=tributary dbname=tributary", autocommit=True
            )
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def statements(path):
    """The file's statements, with the broker the compose network gives Tributary."""
    text = path.read_text().replace("127.0.0.1:9092", "kafka:19092")
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
    return [statement.strip() for statement in code.split(";") if statement.strip()]


def same(table, want):
    if set(table) != set(want):
        return False
    return all(
        table[key][0] == want[key][0] and abs(decimal.Decimal(table[key][1]) - want[key][1]) < 1e-9
        for key in want
    )


def check_view(connection, want):
    connection.execute("FLUSH")
    rows = connection.execute("SELECT key, sum, avg FROM per_key").fetchall()
    table = {key: (int(total), average) for key, total, average in rows}
    if not same(table, want):
        raise SystemExit(f"per_key differs from the expected sums: {sorted(table.items())[:5]}...")
    print(f"compose check: per_key holds the expected sum and avg for {len(table)} keys")


def check_sink(want, deadline_seconds=60):
    """Reads result_topic (last value per key) until it equals the expected table."""
    import json
    from kafka import KafkaConsumer

    deadline = time.monotonic() + deadline_seconds
    last = {}
    consumer = KafkaConsumer(
        "result_topic", bootstrap_servers="127.0.0.1:9092", auto_offset_reset="earliest",
        enable_auto_commit=False, consumer_timeout_ms=2000,
    )
    try:
        while True:
            for message in consumer:
                key = json.loads(message.key)["key"]
                if message.value is None:
                    last.pop(key, None)
                else:
                    row = json.loads(message.value)
                    last[key] = (int(row["sum"]), row["avg"])
            if same(last, want):
                print(f"compose check: result_topic holds the expected row for {len(last)} keys")
                return
            if time.monotonic() > deadline:
                raise SystemExit(f"result_topic differs: {sorted(last.items())[:5]}...")
    finally:
        consumer.close()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=20_000)
    arguments = parser.parse_args()
    count = arguments.count

    produce(0, count)
    with connect() as connection:
        for statement in statements(root / "sql/seed_pipeline.sql"):
            connection.execute(statement)
        check_view(connection, expected(count))
    check_sink(expected(count))

    subprocess.run(["docker-compose", "restart", "tributary"], check=True, cwd=root)
    produce(count, count)
    with connect() as connection:
        check_view(connection, expected(2 * count))
    check_sink(expected(2 * count))


if __name__ == "__main__":
    main()
