"""Posts in, entities out: the ``Tagger`` that the worker, `bga-mner tag` and export parity all run."""

from __future__ import annotations

from bga_mner.tagging.outcomes import PostError, PostRejected, TaggedPost, entity_to_dict
from bga_mner.tagging.tagger import TEXT_INPUTS, Padding, PreparedPost, Tagger

__all__ = [
    "TEXT_INPUTS",
    "Padding",
    "PostError",
    "PostRejected",
    "PreparedPost",
    "TaggedPost",
    "Tagger",
    "entity_to_dict",
]
