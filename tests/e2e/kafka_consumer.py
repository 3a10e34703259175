"""A Kafka client no one here wrote (kafka-python), for tests/e2e/events_kafka.rs.

    kafka_consumer.py BROKERS create TOPIC [--partitions N]
        Creates TOPIC (KafkaAdminClient); an existing topic is fine.
    kafka_consumer.py BROKERS consume TOPIC [--seconds S] [--count M]
        Reads TOPIC from the beginning of every partition until M messages
        were read or S seconds passed, printing each message as one JSON line:
        {"key", "headers": {name: value}, "value", "partition", "offset"}
        (key, header values and value decoded as UTF-8; key null when absent).

BROKERS is host:port[,host:port]. Exits non-zero with a message on stderr when
the brokers cannot be reached or the topic does not exist.
"""

import argparse
import json
import sys
import time

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError


def text(raw):
    return None if raw is None else raw.decode("utf-8")


def create(brokers, topic, partitions):
    admin = KafkaAdminClient(bootstrap_servers=brokers, client_id="tokengate-test-admin")
    try:
        admin.create_topics(
            [NewTopic(name=topic, num_partitions=partitions, replication_factor=1)]
        )
        print(json.dumps({"created": topic}), flush=True)
    except TopicAlreadyExistsError:
        print(json.dumps({"exists": topic}), flush=True)
    finally:
        admin.close()


def consume(brokers, topic, seconds, count):
    deadline = time.monotonic() + seconds
    consumer = KafkaConsumer(
        bootstrap_servers=brokers,
        client_id="tokengate-test-consumer",
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    try:
        partitions = None
        while not partitions:
            # None, or (from tansu) an empty set, for a topic that does not exist.
            partitions = consumer.partitions_for_topic(topic)
            if not partitions:
                if time.monotonic() >= deadline:
                    sys.exit(f"topic {topic!r} does not exist on {brokers}")
                time.sleep(0.05)
        assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        consumer.seek_to_beginning(*assigned)
        seen = 0
        while seen < count:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            batches = consumer.poll(timeout_ms=int(min(left, 0.2) * 1000))
            for records in batches.values():
                for record in records:
                    print(
                        json.dumps(
                            {
                                "key": text(record.key),
                                "headers": {k: text(v) for k, v in record.headers},
                                "value": text(record.value),
                                "partition": record.partition,
                                "offset": record.offset,
                            }
                        ),
                        flush=True,
                    )
                    seen += 1
    finally:
        consumer.close()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("brokers")
    commands = parser.add_subparsers(dest="command", required=True)
    made = commands.add_parser("create")
    made.add_argument("topic")
    made.add_argument("--partitions", type=int, default=3)
    read = commands.add_parser("consume")
    read.add_argument("topic")
    read.add_argument("--seconds", type=float, default=10.0)
    read.add_argument("--count", type=int, default=sys.maxsize)
    args = parser.parse_args()
    brokers = args.brokers.split(",")
    if args.command == "create":
        create(brokers, args.topic, args.partitions)
    else:
        consume(brokers, args.topic, args.seconds, args.count)


if __name__ == "__main__":
    main()
