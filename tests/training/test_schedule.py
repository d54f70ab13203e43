"""The learning rate anneals to 0 exactly at the planned end, whichever shape is chosen."""

from __future__ import annotations

import pytest
import torch

from training.schedule import ScheduleName, build_scheduler, lr_multiplier


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_warms_up_peaks_and_reaches_zero_at_the_planned_end(kind: ScheduleName) -> None:
    total, warmup = 100, 10
    factors = [
        lr_multiplier(step, warmup_steps=warmup, total_steps=total, kind=kind) for step in range(total + 5)
    ]
    assert 0.0 < factors[0] < factors[warmup - 1] < 1.0  # warm-up rises from above 0
    assert factors[warmup] == pytest.approx(1.0)  # the peak right after warm-up
    assert all(a >= b for a, b in zip(factors[warmup:], factors[warmup + 1 :], strict=False))
    assert factors[total] == pytest.approx(0.0, abs=1e-12)
    assert factors[-1] == pytest.approx(0.0, abs=1e-12)  # and stays there
    assert factors[total - 1] < 0.03  # the last planned step is already nearly annealed


def test_cosine_stays_higher_than_linear_early_and_lower_late() -> None:
    def at(step: int, kind: ScheduleName) -> float:
        return lr_multiplier(step, warmup_steps=0, total_steps=100, kind=kind)

    assert at(25, "cosine") > at(25, "linear")
    assert at(75, "cosine") < at(75, "linear")


def test_scheduler_steps_the_optimiser_to_zero() -> None:
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=0.5)
    scheduler = build_scheduler(optimizer, kind="linear", warmup_ratio=0.1, total_steps=50)
    rates = []
    for _ in range(50):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert max(rates) == pytest.approx(0.5)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)
