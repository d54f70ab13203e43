"""The average of the last N epochs' weights: floats averaged, integer buffers from the newest."""

from __future__ import annotations

import pytest
import torch

from training.averaging import LastEpochsAverage


def test_averages_the_last_n_float_tensors_and_keeps_integer_buffers() -> None:
    average = LastEpochsAverage(2)
    assert not average.ready
    for value in (1.0, 3.0, 5.0):  # only the last two (3 and 5) count
        average.add({"w": torch.full((2,), value), "ids": torch.tensor([int(value)])})
    assert average.ready and len(average) == 2
    result = average.average()
    assert torch.equal(result["w"], torch.full((2,), 4.0))
    assert torch.equal(result["ids"], torch.tensor([5]))


def test_copies_are_taken_not_references() -> None:
    average = LastEpochsAverage(2)
    weight = torch.zeros(1)
    average.add({"w": weight})
    weight += 10.0  # training goes on in place
    average.add({"w": weight})
    assert average.average()["w"].item() == pytest.approx(5.0)


def test_off_and_single_epoch_are_never_ready() -> None:
    for count in (0, 1):
        average = LastEpochsAverage(count)
        average.add({"w": torch.zeros(1)})
        assert not average.ready
