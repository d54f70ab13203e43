"""The posts every system of the pipeline benchmark tags: Twitter-2017 test, else the shipped sample.

Twitter-2017 test (723 tweets, from the benchmark data: ``BGA_DATA_DIR`` or ../shared/data) when it
is present, its gold tokens joined by spaces (as a tweet's text); otherwise the project's own demo
sample. The list is repeated up to ``count`` posts with distinct ids, so a run is long enough to
measure while every system sees exactly the same texts in the same order.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from bga_mner.paths import data_dir

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "bga_mner" / "demo_data" / "sample_posts.jsonl"


@dataclass(frozen=True)
class PostSet:
    source: str  # a description without machine paths
    distinct: int
    posts: list[dict[str, str]]  # {"id", "text"}

    def write_jsonl(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8") as out:
            for post in self.posts:
                out.write(json.dumps(post, ensure_ascii=False) + "\n")
        return path


def conll_texts(path: Path) -> list[str]:
    texts: list[str] = []
    words: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("IMGID:"):
            continue
        if not line.strip():
            if words:
                texts.append(" ".join(words))
            words = []
            continue
        words.append(line.split("\t")[0])
    if words:
        texts.append(" ".join(words))
    return texts


def load_posts(count: int) -> PostSet:
    root = data_dir()
    conll = root / "twitter2017" / "test.txt" if root is not None else None
    if conll is not None and conll.is_file():
        texts, source = conll_texts(conll), "Twitter-2017 test (gold tokens joined by spaces)"
    else:
        lines = SAMPLE.read_text(encoding="utf-8").splitlines()
        texts = [json.loads(line)["text"] for line in lines if line.strip()]
        source = "bga_mner/demo_data/sample_posts.jsonl (the benchmark data is absent)"
    posts = [
        {"id": f"p{index:06d}", "text": texts[index % len(texts)]} for index in range(max(count, len(texts)))
    ]
    return PostSet(source, len(texts), posts[:count] if count else posts)
