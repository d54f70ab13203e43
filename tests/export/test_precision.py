"""Export's precision choice: the cheapest graph whose dev F1 is within 0.3 of fp32's, numbers in the card."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from training.export import precision
from training.export.served_f1 import ServedScore

NOTHING: Any = object()  # stands for inputs the choice must not touch when scoring is faked


def _choose(
    monkeypatch: pytest.MonkeyPatch,
    dev_f1: dict[str, float],
    candidates: tuple[str, ...] = (precision.INT8,),
) -> precision.PrecisionChoice:
    scored: list[str] = []

    class FakeBackend:
        def __init__(self, path: Path, threads: int) -> None:
            self.name = path.name

        def infer(self, inputs: Any) -> Any:
            raise AssertionError("not called")

    def score(fn: Any, sentences: Any, *args: Any, **kwargs: Any) -> ServedScore:
        scored.append(fn.__self__.name)
        return ServedScore(dev_f1[fn.__self__.name], 0.0, 0.0, [])

    monkeypatch.setattr(precision, "OnnxBackend", FakeBackend)
    monkeypatch.setattr("training.export.served_f1.served_score", score)
    choice = precision.choose_precision(
        Path(precision.FP32),
        [(name, Path(name)) for name in candidates],
        dev=[NOTHING],
        test=None,
        encoder=NOTHING,
        labels=[],
        crf=NOTHING,
    )
    assert scored == [name for name in (precision.FP32, *candidates) if name in choice.dev_f1]
    return choice


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
    choice = _choose(monkeypatch, {precision.FP32: 85.0, precision.INT8: int8_f1})
    assert choice.precision == expected
    card = choice.to_card()
    assert card["dev_f1"] == {precision.FP32: 85.0, precision.INT8: round(int8_f1, 3)}
    assert card["max_dev_f1_drop"] == precision.INT8_MAX_DEV_F1_DROP


@pytest.mark.parametrize(
    ("int8_f1", "mixed_f1", "expected", "scored"),
    [
        (84.9, 80.0, precision.INT8, 2),  # the cheapest passes: the mixed graph is not even scored
        (84.0, 84.8, precision.INT8_FFN_FP32, 3),
        (84.0, 84.6, precision.FP32, 3),
    ],
)
def test_the_cheapest_graph_within_the_drop_is_served(
    monkeypatch: pytest.MonkeyPatch, int8_f1: float, mixed_f1: float, expected: str, scored: int
) -> None:
    dev_f1 = {precision.FP32: 85.0, precision.INT8: int8_f1, precision.INT8_FFN_FP32: mixed_f1}
    choice = _choose(monkeypatch, dev_f1, (precision.INT8, precision.INT8_FFN_FP32))
    assert choice.precision == expected
    assert len(choice.dev_f1) == scored
    if expected == precision.FP32:
        assert choice.reason.endswith("fp32 served") and "loses 1.00" in choice.reason


def test_without_dev_data_fp32_is_served_and_the_card_says_why() -> None:
    choice = precision.choose_precision(
        Path("a"),
        [(precision.INT8, Path("b"))],
        dev=None,
        test=None,
        encoder=NOTHING,
        labels=[],
        crf=NOTHING,
    )
    assert choice.precision == precision.FP32
    assert "no dev split" in choice.to_card()["reason"]
