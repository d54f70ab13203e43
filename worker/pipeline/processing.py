"""Step 2, in a batch's thread: tag the batch's posts, write the tagged ones to the sink, with retries.

Returns one outcome per item, in order: a ``TaggedPost`` (its record is in the sink) or a
``PostError`` (a post that can never be tagged; the loop dead-letters it). Transient failures of
the model or the sink are retried by the ``Retrier`` until they pass or the shutdown aborts them.
"""

from __future__ import annotations

from collections.abc import Sequence

from bga_mner.tagging import PostError, TaggedPost
from worker.pipeline.items import Item
from worker.pipeline.ports import SinkLike, TaggerLike
from worker.pipeline.retry import Retrier
from worker.sinks.redis_sink import SinkRecord

Outcome = TaggedPost | PostError


class TagAndWrite:
    def __init__(self, tagger: TaggerLike, sink: SinkLike, retrier: Retrier) -> None:
        self._tagger = tagger
        self._sink = sink
        self._retrier = retrier

    def __call__(self, batch: Sequence[Item]) -> list[Outcome]:
        posts = [item.post for item in batch]
        outcomes = self._retrier.call("tagging", lambda: self._tagger.tag_with_errors(posts))
        records = [
            sink_record(item, outcome)
            for item, outcome in zip(batch, outcomes, strict=True)
            if isinstance(outcome, TaggedPost)
        ]
        if records:
            self._retrier.call("sink", lambda: self._sink.write_batch(records))
        return outcomes


def sink_record(item: Item, tagged: TaggedPost) -> SinkRecord:
    record = item.record
    return SinkRecord(
        tagged=tagged,
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        kafka_timestamp_ms=record.timestamp if record.timestamp >= 0 else None,
        created_at=item.post.created_at,
    )
