"""Export's precision choice: int8 only when its dev F1 is within 0.3 of fp32's, numbers in the card."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from training.export import precision
from training.export.served_f1 import ServedScore

NOTHING: Any = object()  # stands for inputs the choice must not touch when scoring is faked


def _choose(monkeypatch: pytest.MonkeyPatch, dev_f1: dict[str, float]) -> precision.PrecisionChoice:
    class FakeBackend:
        def __init__(self, path: Path, threads: int) -> None:
            self.name = path.name

        def infer(self, inputs: Any) -> Any:
            raise AssertionError("not called")

    def score(fn: Any, sentences: Any, *args: Any, **kwargs: Any) -> ServedScore:
        return ServedScore(dev_f1[fn.__self__.name], 0.0, 0.0, [])

    monkeypatch.setattr(precision, "OnnxBackend", FakeBackend)
    monkeypatch.setattr("training.export.served_f1.served_score", score)
    return precision.choose_precision(
        Path("fp32"),
        Path("int8"),
        dev=[NOTHING],
        test=None,
        encoder=NOTHING,
        labels=[],
        crf=NOTHING,
    )


@pytest.mark.parametrize(
    ("int8_f1", "expected"),
    [
        (85.0, precision.INT8),
        (84.8, precision.INT8),
        (84.7, precision.INT8),
        (84.69, precision.FP32),
        (80.0, precision.FP32),
    ],
)
def test_int8_only_within_the_allowed_dev_f1_drop(
    monkeypatch: pytest.MonkeyPatch, int8_f1: float, expected: str
) -> None:
    choice = _choose(monkeypatch, {"fp32": 85.0, "int8": int8_f1})
    assert choice.precision == expected
    card = choice.to_card()
    assert card["dev_f1"] == {precision.FP32: 85.0, precision.INT8: round(int8_f1, 3)}
    assert card["max_dev_f1_drop"] == precision.INT8_MAX_DEV_F1_DROP


def test_without_dev_data_fp32_is_served_and_the_card_says_why() -> None:
    choice = precision.choose_precision(
        Path("a"),
        Path("b"),
        dev=None,
        test=None,
        encoder=NOTHING,
        labels=[],
        crf=NOTHING,
    )
    assert choice.precision == precision.FP32
    assert "no dev split" in choice.to_card()["reason"]
