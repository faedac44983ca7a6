"""Writes example events for the scripts in sql/ to Kafka, as JSON, with kafka-python.

    python3 sql/produce_examples.py visits     [--count 10000] [--topic page_visits]
    python3 sql/produce_examples.py sales      [--count 10000] [--topic sales]
    python3 sql/produce_examples.py monitoring [--count 10000] [--topic metrics]

Events are the same on every run (a fixed random seed), so the scripts' results are too.
The seed pipeline's own producer is tests/kafka/produce.py.
"""

import argparse
import json
import random
import warnings

from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

warnings.filterwarnings("ignore", category=DeprecationWarning)

PAGES = ["/", "/pricing", "/docs", "/blog", "/signup"]
PRODUCTS = [("keyboard", 49.90), ("mouse", 19.50), ("monitor", 199.00), ("cable", 4.99)]
HOSTS = ["web-1", "web-2", "db-1"]


def visit(rng, i):
    return {
        "page": PAGES[rng.randrange(len(PAGES))],
        "user_id": rng.randrange(1, 500),
        "ms": rng.randrange(5, 2000),
        "at": f"2026-11-25 10:{(i // 1000) % 60:02d}:{(i // 17) % 60:02d}",
    }


def sale(rng, i):
    product, price = PRODUCTS[rng.randrange(len(PRODUCTS))]
    return {"order_id": i, "product": product, "quantity": rng.randrange(1, 5), "price": price}


def metric(rng, i):
    host = HOSTS[i % len(HOSTS)]
    return {
        "host": host,
        "cpu": round(rng.uniform(0, 100), 1),
        "memory_mb": rng.randrange(512, 16384),
        "at": f"2026-11-25 10:{(i // 600) % 60:02d}:{(i // 10) % 60:02d}",
    }


KINDS = {
    "visits": (visit, "page_visits", "page"),
    "sales": (sale, "sales", "product"),
    "monitoring": (metric, "metrics", "host"),
}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=sorted(KINDS))
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--topic")
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--partitions", type=int, default=3)
    arguments = parser.parse_args()
    make, default_topic, key_field = KINDS[arguments.kind]
    topic = arguments.topic or default_topic

    admin = KafkaAdminClient(bootstrap_servers=arguments.bootstrap)
    try:
        admin.create_topics(
            [NewTopic(topic, num_partitions=arguments.partitions, replication_factor=1)]
        )
    except TopicAlreadyExistsError:
        pass
    finally:
        admin.close()

    producer = KafkaProducer(
        bootstrap_servers=arguments.bootstrap,
        value_serializer=lambda value: json.dumps(value).encode("utf-8"),
        key_serializer=lambda key: key.encode("utf-8"),
    )
    rng = random.Random(2026)
    for i in range(arguments.count):
        event = make(rng, i)
        producer.send(topic, key=str(event[key_field]), value=event)
    producer.flush()
    producer.close()


if __name__ == "__main__":
    main()
