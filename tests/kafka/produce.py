"""Produces the seed pipeline's messages: JSON {"key": k, "value": v} to a topic, with kafka-python,
as the Spark job's producer did. Message i (counting from --start) has key i % keys and value
(i * 7) % 1000, so a test can compute what every aggregate must be.

    produce.py --bootstrap 127.0.0.1:9092 --topic test_topic --count 100000 [--start 0]
               [--keys 100] [--partitions 3] [--raw FILE]

--raw sends each line of FILE as one message value instead (bytes as they are; an empty line is
an empty message), to mix malformed messages into a stream.
"""

import argparse
import json
import warnings

from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError


# kafka-python 3 prefers Serializer classes; the seed's producer used plain functions.
warnings.filterwarnings("ignore", category=DeprecationWarning)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--topic", default="test_topic")
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--keys", type=int, default=100)
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--raw")
    arguments = parser.parse_args()

    admin = KafkaAdminClient(bootstrap_servers=arguments.bootstrap)
    try:
        admin.create_topics(
            [NewTopic(arguments.topic, num_partitions=arguments.partitions, replication_factor=1)]
        )
    except TopicAlreadyExistsError:
        pass
    finally:
        admin.close()

    if arguments.raw:
        producer = KafkaProducer(bootstrap_servers=arguments.bootstrap)
        with open(arguments.raw, "rb") as lines:
            for line in lines:
                producer.send(arguments.topic, line.rstrip(b"\n"))
    else:
        producer = KafkaProducer(
            bootstrap_servers=arguments.bootstrap,
            value_serializer=lambda value: json.dumps(value).encode("utf-8"),
            key_serializer=lambda key: str(key).encode("utf-8"),
            linger_ms=20,
            batch_size=256 * 1024,
        )
        for i in range(arguments.start, arguments.start + arguments.count):
            key = i % arguments.keys
            producer.send(arguments.topic, key=key, value={"key": key, "value": (i * 7) % 1000})
    producer.flush()
    producer.close()


if __name__ == "__main__":
    main()
