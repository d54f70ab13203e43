"""Words -> windows of subword ids for the backbone, identical in training and serving.

Training encodes the benchmark's gold tokens, the worker encodes ``split_words`` of a post; both
call :class:`SubwordEncoder`, so the subword ids, casing ids and the word -> first-subword map
can never drift apart between the two.

The tokenizer never truncates: a post longer than ``max_length`` subwords becomes several
overlapping windows. Windows are cut at word boundaries; consecutive windows share up to
``stride`` *subwords* (whole words) of context, and every word is owned by exactly one window:
the one where it is furthest (in subwords) from a cut border, so each word is predicted with as
much context as possible on both sides and no entity is lost at a border.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Encoding, Tokenizer

from bga_mner.preprocessing.casing import casing_class

__all__ = ["EncodedWindow", "SubwordEncoder"]


@dataclass(frozen=True)
class EncodedWindow:
    """One model input row: [CLS] subwords of a run of words [SEP].

    ``word_index`` has one entry per word of the whole post: the position of the word's first
    subword in this window, or -1 when the word is not in this window or has no subwords at all
    (U+FE0F alone, U+200B, a lone combining mark: the tokenizer's normaliser removes them).
    """

    input_ids: list[int]
    casing_ids: list[int]
    word_index: list[int]
    owned_words: range


class SubwordEncoder:
    """Encode pre-split words with a `tokenizers` fast tokenizer into overlapping windows.

    ``stride`` is the overlap between consecutive windows, in subwords (rounded down to whole
    words); it must be smaller than the room left after the special tokens (a quarter of
    ``max_length`` is a good value: more overlap means more windows per long post). A single word
    keeps at most ``max_length - specials - stride`` subwords (only very long URLs or junk reach
    that); its label sits on the first subword, so nothing the model is asked about is lost.
    """

    def __init__(self, tokenizer: Tokenizer, max_length: int, stride: int = 32) -> None:
        # A private copy: the shipped tokenizer.json enables truncation and padding to 128, which
        # would silently cut long posts; the caller's object is left untouched.
        self._tokenizer = Tokenizer.from_str(tokenizer.to_str())
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()
        self.max_length = max_length
        self.stride = stride
        self.prefix_ids, self.suffix_ids = self._special_affixes()
        self.budget = max_length - len(self.prefix_ids) - len(self.suffix_ids)
        if self.budget < 2:
            raise ValueError(
                f"max_length={max_length} leaves {self.budget} subwords after the special tokens "
                f"{self.prefix_ids + self.suffix_ids}; need at least 2"
            )
        if not 0 <= stride < self.budget:
            raise ValueError(
                f"stride={stride} must be between 0 and {self.budget - 1}: a window of "
                f"max_length={max_length} holds {self.budget} subwords besides the special tokens"
            )
        self.max_word_subwords = self.budget - stride
        self.pad_id = self._find_pad_id(tokenizer)

    @classmethod
    def from_file(cls, tokenizer_json: Path, max_length: int, stride: int = 32) -> SubwordEncoder:
        """Load a ``tokenizer.json`` (the file shipped in the model repository)."""
        path = Path(tokenizer_json)
        if not path.is_file():
            raise FileNotFoundError(f"tokenizer file not found: {path}")
        return cls(Tokenizer.from_file(str(path)), max_length, stride)

    def _special_affixes(self) -> tuple[list[int], list[int]]:
        """The special ids the tokenizer's post-processor puts before and after one sequence."""
        encoding = self._tokenizer.encode(["a"], is_pretokenized=True, add_special_tokens=True)
        ids, specials = encoding.ids, encoding.special_tokens_mask
        content = [i for i, special in enumerate(specials) if not special]
        if not content:
            raise ValueError("the tokenizer produced no content token for the word 'a'")
        return ids[: content[0]], ids[content[-1] + 1 :]

    @staticmethod
    def _find_pad_id(tokenizer: Tokenizer) -> int:
        padding = tokenizer.padding
        if padding is not None:
            return int(padding["pad_id"])
        for token in ("[PAD]", "<pad>", "<PAD>"):
            token_id = tokenizer.token_to_id(token)
            if token_id is not None:
                return token_id
        return 0

    def encode_words(self, words: Sequence[str]) -> list[EncodedWindow]:
        """Encode one post's words; always returns at least one window (also for no words)."""
        return self.encode_many([words])[0]

    def encode_many(self, posts: Sequence[Sequence[str]]) -> list[list[EncodedWindow]]:
        """Encode many posts at once through the tokenizer's parallel batch encoder."""
        word_lists = [list(words) for words in posts]
        encodings = self._tokenizer.encode_batch(word_lists, is_pretokenized=True, add_special_tokens=False)
        return [self._windows(words, encoding) for words, encoding in zip(word_lists, encodings, strict=True)]

    def _windows(self, words: list[str], encoding: Encoding) -> list[EncodedWindow]:
        pieces: list[list[int]] = [[] for _ in words]
        for token_id, word_id in zip(encoding.ids, encoding.word_ids, strict=True):
            if word_id is not None and len(pieces[word_id]) < self.max_word_subwords:
                pieces[word_id].append(token_id)
        counts = [len(p) for p in pieces]
        ranges = self._window_ranges(counts)
        owners = self._owners(counts, ranges)
        casings = [casing_class(word) for word in words]
        windows = []
        owned_start = 0
        for k, (start, end) in enumerate(ranges):
            owned_end = owned_start
            while owned_end < len(words) and owners[owned_end] == k:
                owned_end += 1
            input_ids = list(self.prefix_ids)
            casing_ids = [0] * len(self.prefix_ids)
            word_index = [-1] * len(words)
            for i in range(start, end):
                if pieces[i]:
                    word_index[i] = len(input_ids)
                    input_ids.extend(pieces[i])
                    casing_ids.extend([casings[i]] * len(pieces[i]))
            input_ids.extend(self.suffix_ids)
            casing_ids.extend([0] * len(self.suffix_ids))
            windows.append(EncodedWindow(input_ids, casing_ids, word_index, range(owned_start, owned_end)))
            owned_start = owned_end
        return windows

    def _window_ranges(self, counts: list[int]) -> list[tuple[int, int]]:
        """Word ranges [start, end) of the windows: greedy fill, then step back ``stride`` subwords."""
        n = len(counts)
        if sum(counts) <= self.budget:
            return [(0, n)]
        ranges = []
        start = 0
        while True:
            end, used = start, 0
            while end < n and used + counts[end] <= self.budget:
                used += counts[end]
                end += 1
            ranges.append((start, end))
            if end >= n:
                return ranges
            next_start, overlap = end, 0
            while next_start - 1 > start and overlap + counts[next_start - 1] <= self.stride:
                next_start -= 1
                overlap += counts[next_start]
            start = next_start

    @staticmethod
    def _owners(counts: list[int], ranges: list[tuple[int, int]]) -> list[int]:
        """For each word, the window where it is furthest from a cut border (ties: the earlier)."""
        owners = [0] * len(counts)
        best = [-math.inf] * len(counts)
        last = len(ranges) - 1
        for k, (start, end) in enumerate(ranges):
            length = sum(counts[start:end])
            position = 0
            for i in range(start, end):
                left = position if k > 0 else math.inf
                right = length - position - counts[i] if k < last else math.inf
                distance = min(left, right)
                if distance > best[i]:
                    best[i], owners[i] = distance, k
                position += counts[i]
        for i in range(1, len(owners)):  # ranges of owned words must be contiguous and ordered
            owners[i] = max(owners[i], owners[i - 1])
        return owners
