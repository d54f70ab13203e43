"""One consumed message on its way through the loop: the Kafka record and the post parsed from it."""

from __future__ import annotations

from dataclasses import dataclass

from kafka import TopicPartition
from kafka.consumer.fetcher import ConsumerRecord

from bga_mner.posts import Post


def partition_of(record: ConsumerRecord) -> TopicPartition:
    return TopicPartition(record.topic, record.partition)


@dataclass(frozen=True)
class Item:
    record: ConsumerRecord
    post: Post

    @property
    def tp(self) -> TopicPartition:
        return partition_of(self.record)

    def where(self) -> str:
        return f"{self.record.topic}-{self.record.partition}@{self.record.offset}"
