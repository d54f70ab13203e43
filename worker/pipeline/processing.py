"""Step 2, in a batch's thread: tag the batch's posts, write the tagged ones to the sink, with retries.

Returns one outcome per item, in order: a ``TaggedPost`` (its record is in the sink) or a
``PostError`` (a post that can never be tagged; the loop dead-letters it). The per-post work
(words, windows, a fetched image) is done once; only the model call is retried while the model or
the sink is unavailable (``TransientError``), until it passes or the shutdown aborts it.

One post must never stop the worker: when the model refuses a request (``InferenceRejected``, e.g.
a post the served engine cannot take) or tagging fails unexpectedly, the batch is split in halves
until the posts responsible are found; each is dead-lettered with the reason and the rest go on.
A refusal that is systemic (every post fails) dead-letters every post, which trips the dead-letter
limit and stops the worker, as it should.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from bga_mner.errors import BgaMnerError, RejectedError
from bga_mner.tagging import PostError, PreparedPost, TaggedPost
from worker.pipeline.items import Item
from worker.pipeline.ports import SinkLike, TaggerLike
from worker.pipeline.retry import Retrier
from worker.sinks.redis_sink import SinkRecord

log = logging.getLogger(__name__)

Outcome = TaggedPost | PostError


class TagAndWrite:
    def __init__(self, tagger: TaggerLike, sink: SinkLike, retrier: Retrier) -> None:
        self._tagger = tagger
        self._sink = sink
        self._retrier = retrier

    def __call__(self, batch: Sequence[Item]) -> list[Outcome]:
        prepared = self._tagger.prepare([item.post for item in batch])
        outcomes = self._tag(prepared)
        records = [
            sink_record(item, outcome)
            for item, outcome in zip(batch, outcomes, strict=True)
            if isinstance(outcome, TaggedPost)
        ]
        if records:
            self._retrier.call("sink", lambda: self._sink.write_batch(records))
        return outcomes

    def _tag(self, prepared: Sequence[PreparedPost]) -> list[Outcome]:
        try:
            return self._retrier.call("tagging", lambda: self._tagger.infer(prepared))
        except Exception as error:
            if isinstance(error, BgaMnerError) and not isinstance(error, RejectedError):
                raise  # a TransientError left over at shutdown, or a configuration problem
            if len(prepared) == 1:
                post = prepared[0].post
                reason = "rejected_by_model" if isinstance(error, RejectedError) else "unprocessable"
                log.warning(
                    "post cannot be tagged: dead-lettering it",
                    extra={"fields": {"post": post.id, "reason": reason, "error": repr(error)}},
                )
                return [PostError(post.id, reason, f"{type(error).__name__}: {error}"[:500])]
            middle = len(prepared) // 2
            return self._tag(prepared[:middle]) + self._tag(prepared[middle:])


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
