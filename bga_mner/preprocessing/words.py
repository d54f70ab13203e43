"""Tweet-aware pre-tokenisation of a raw post into words with exact character offsets.

The model is trained on the gold tokens of the Twitter-2015/2017 benchmarks and served on raw
posts, so serving-time words must look like training-time tokens or the model sees inputs it
never saw. The benchmark tokenisation (inspected in ``twitter2015/train.txt``) is:

* URLs are one token, also when truncated with an ellipsis (``http://t.co/Ab…``, ``http…``);
* ``@mention`` and ``#hashtag`` are one token of letters and digits: an underscore is split off
  (``RT @The _ Millions :``);
* every punctuation mark is its own token, including ``'`` in contractions (``I ' ve``), ``.``
  and ``:`` inside numbers (``$ 2 . 99``, ``6 : 25``) and the ``;`` of HTML entities
  (``&amp ;``); hyphens inside words stay (``high-level``, ``3-1``), as do ``w/`` and ``w/o``;
* ``...`` and ``--`` runs stay together; emoji are kept together as one run.

Measured agreement: re-splitting ``" ".join(gold tokens)`` gives exactly the gold tokens for
94.8 % of the 4,000 tweets of Twitter-2015 train (94.0 % of Twitter-2017 train, which has its
own conventions: ``@ user``, ``# tag``, a lone U+FE0F token, numbers like ``2.00`` kept whole);
``tests/core/preprocessing/test_benchmark_agreement.py`` guards it. The misses are tokens the
benchmark itself left unsplit (``wow.``, ``@NASA_EO)``, ``http://t.co/x"``) and 37 tweets whose
URL the benchmark broke into ``https : //t . co/x``; serving sees intact URLs, so neither is
worth imitating.

Offsets are Python ``str`` indices into the original text: ``word.text == text[word.start:word.end]``
always holds. Whitespace and zero-width format characters (Unicode category Cf: U+200B, U+200E/F,
U+2060, U+FEFF, bidi controls, soft hyphen...) separate words and are never part of one; the only
exception is ZWJ (U+200D) and variation selectors inside an emoji sequence. Note that this also
splits words at a ZWNJ (U+200C), which some Persian spellings use inside a word.
"""

from __future__ import annotations

from dataclasses import dataclass

import regex  # no types-regex in the dev extras yet

__all__ = ["PRETOKENIZER_ID", "Word", "split_words"]

# Stored in the manifest so serving can refuse a repository made with a different pre-tokenizer.
PRETOKENIZER_ID = "bga-mner-tweet-v1"


@dataclass(frozen=True)
class Word:
    """One word of a post; ``text`` is exactly ``post[start:end]``."""

    text: str
    start: int
    end: int


# One emoji "grapheme": a flag (two regional indicators), a keycap, or a pictograph with optional
# presentation selector, skin tone, tag sequence (subdivision flags) and ZWJ-joined continuations.
_EMOJI = r"""
    (?:
        \p{Regional_Indicator}{2}
      | [0-9\#*]\uFE0F?\u20E3
      | \p{Extended_Pictographic}[\uFE0E\uFE0F]?\p{Emoji_Modifier}?[\U000E0020-\U000E007F]*
        (?:\u200D\p{Extended_Pictographic}[\uFE0E\uFE0F]?\p{Emoji_Modifier}?)*
      | \p{Regional_Indicator}
    )
"""

_ALNUM = r"[[\p{L}\p{M}\p{N}]--[\uFE00-\uFE0F]]"
# Characters that can never be inside a word: whitespace, format characters, stray variation selectors.
_SEPARATOR = r"[\s\p{Cf}\uFE00-\uFE0F]"
_URL_CHAR = r"[^\s\p{Cf}…\p{Extended_Pictographic}]"
# Trailing characters that belong to the sentence, not to the URL.
_URL_TRAILING = r"""[.,!?;:'"’”)\]}>]"""

_WORD_PATTERN = regex.compile(
    rf"""
      (?P<url>
          (?:https?://|www\.){_URL_CHAR}*(?:…|(?<!{_URL_TRAILING})(?<=\S))
        | (?<!{_ALNUM})h(?:t(?:t(?:ps?)?)?)?(?::/{{0,2}})?…        # truncated "http…", "ht…", "http:/…"
      )
    | (?P<emoji>{_EMOJI}+)
    | (?P<emoticon>(?<![\p{{L}}\p{{N}}])[:;=][-'^]?[()\[\]DPpOo3/\\|*](?![\p{{L}}\p{{N}}]))
    | (?P<mention>[@\#＃＠]{_ALNUM}+)
    | (?P<cashtag>\$[A-Za-z]{{1,6}}(?![\p{{L}}\p{{N}}]))
    | (?P<entity>-*&(?:amp|lt|gt|quot|apos|nbsp)(?![A-Za-z]))
    | (?P<with>(?<!{_ALNUM})[wW]/[oO]?(?!{_ALNUM}))
    | (?P<word>{_ALNUM}+(?:[-‐‑/]{_ALNUM}+)*)
    | (?P<run>\.{{2,}}|-{{2,}}|…+)
    | (?P<other>(?!{_SEPARATOR}).)
    """,
    regex.VERBOSE | regex.VERSION1,
)


def split_words(text: str) -> list[Word]:
    """Split a raw post into benchmark-like words, keeping exact character offsets."""
    return [Word(m.group(), m.start(), m.end()) for m in _WORD_PATTERN.finditer(text)]
