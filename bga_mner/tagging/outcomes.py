"""What tagging a post yields: its entities, or the reason it can never be tagged; and their JSON form."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bga_mner.decoding import Entity
from bga_mner.errors import InvalidInput


@dataclass(frozen=True)
class TaggedPost:
    post_id: str
    entities: list[Entity]
    model_version: str


@dataclass(frozen=True)
class PostError:
    """A post that can never be tagged (e.g. its image is unusable); the worker dead-letters it."""

    post_id: str
    reason: str
    detail: str


class PostRejected(InvalidInput):
    """``Tagger.tag`` met posts that can never be tagged; ``tag_with_errors`` reports them one by one."""

    def __init__(self, errors: Sequence[PostError]) -> None:
        super().__init__(
            errors[0].reason if errors else "rejected",
            "; ".join(f"{e.post_id}: {e.reason}: {e.detail}" for e in errors),
        )
        self.errors = list(errors)


def entity_to_dict(entity: Entity) -> dict[str, Any]:
    """The JSON form of an entity, identical in Redis records and `bga-mner tag` output."""
    return {
        "text": entity.text,
        "type": entity.type,
        "start": entity.start,
        "end": entity.end,
        "score": round(float(entity.score), 6),
    }
