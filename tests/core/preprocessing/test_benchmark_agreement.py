"""How well serving-time splitting reproduces the training-time (benchmark) tokens."""

from __future__ import annotations

from pathlib import Path

import pytest

from bga_mner.preprocessing import split_words

pytestmark = pytest.mark.data


def read_conll_tokens(path: Path) -> list[list[str]]:
    """The gold tokens of each tweet of a benchmark file (IMGID header, token<TAB>label lines)."""
    tweets: list[list[str]] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("IMGID:"):
            tweets.append([])
        elif line.strip():
            tweets[-1].append(line.split("\t")[0])
    return tweets


def agreement(path: Path) -> float:
    tweets = read_conll_tokens(path)
    same = sum([w.text for w in split_words(" ".join(tokens))] == tokens for tokens in tweets)
    return same / len(tweets)


def test_twitter2015_train_tokens_are_reproduced(benchmark_dir: Path) -> None:
    # measured 94.78 % (3791 / 4000); see bga_mner/preprocessing/words.py for what the rest is
    assert agreement(benchmark_dir / "twitter2015" / "train.txt") >= 0.945


def test_twitter2017_train_tokens_are_reproduced(benchmark_dir: Path) -> None:
    # measured 94.04 % (3172 / 3373)
    assert agreement(benchmark_dir / "twitter2017" / "train.txt") >= 0.935
