"""Reads a topic from the beginning until it has been idle for --idle seconds and prints, per key,
the last value (a table, as an upsert topic means it), or every message with --all.

    consume.py --bootstrap 127.0.0.1:9092 --topic result_topic [--idle 2] [--all]
"""

import argparse

from kafka import KafkaConsumer


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--topic", default="result_topic")
    parser.add_argument("--idle", type=float, default=2.0)
    parser.add_argument("--all", action="store_true")
    arguments = parser.parse_args()

    consumer = KafkaConsumer(
        arguments.topic,
        bootstrap_servers=arguments.bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=int(arguments.idle * 1000),
    )
    last = {}
    for message in consumer:
        key = message.key.decode() if message.key is not None else None
        value = message.value.decode() if message.value is not None else None
        if arguments.all:
            print(key, value)
        else:
            last[key] = value
    consumer.close()
    for key, value in sorted(last.items(), key=lambda item: str(item[0])):
        if value is not None:
            print(key, value)


if __name__ == "__main__":
    main()
