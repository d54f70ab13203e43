"""Dependencies go away mid-stream, for at least 10 s each: Triton, Redis and the broker (through
their proxies: refused and cut), and a Triton process frozen with SIGSTOP.

During each outage nothing new is committed (nothing unwritten is ever committed); afterwards the
worker recovers by itself, and at the end nothing is lost or counted twice. The recovery time (from
the end of the outage to the next commit) is printed for each.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from bga_mner.stack.local import LocalStack
from tests.integration.worker_support import make_posts, wait_until
from tests.reliability.conftest import Figures
from tests.reliability.harness import ProxiedBroker, Rig, progress, rig, time_to_progress, worker_log_tail
from tests.reliability.proxy import FaultProxy

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

OUTAGE_S = 10.0


def _outage(
    r: Rig, name: str, start: Callable[[], None], end: Callable[[], None], *, broker_down: bool = False
) -> dict[str, float]:
    r.produce(make_posts(600, prefix=f"{name}{len(r.posts)}"))
    wait_until(lambda: r.stored() > len(r.posts) - 550, 120, f"work in flight before {name}")
    before = progress(r)
    start()
    began = time.monotonic()
    time.sleep(3.0)  # batches in flight when it began have failed or finished by now
    # With the broker away nothing can be committed (nor read back through the proxy); otherwise the
    # committed offsets must stand still while the stored records do too.
    frozen = before if broker_down else progress(r)
    stored_frozen = r.stored()
    time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - began)))
    during = before if broker_down else progress(r)
    stored_during = r.stored()
    outage_s = time.monotonic() - began
    end()
    recovery_s = time_to_progress(r, during, 120)
    assert during == frozen, f"{name}: {during - frozen} messages committed while it was down"
    if not broker_down:
        assert stored_during == stored_frozen, f"{name}: posts written while it was down"
    assert stored_during < len(r.posts), f"{name}: everything was done before the outage"
    return {"outage_s": round(outage_s, 1), "recovery_s": round(recovery_s, 2)}


def _unreachable(proxy: FaultProxy) -> Callable[[], None]:
    def start() -> None:
        proxy.set_mode("refuse")
        proxy.cut()

    return start


def test_each_dependency_down_for_ten_seconds_then_back(
    local_stack: LocalStack,
    proxied_broker: ProxiedBroker,
    tiny_model: tuple[Path, str],
    tmp_path: Path,
    figures: Figures,
) -> None:
    triton_pid = local_stack.state.services["triton"].pid
    with rig(
        local_stack,
        proxied_broker,
        tmp_path / "rig",
        tiny_model,
        partitions=3,
        sections={"batching": {"max_batch_size": 8, "max_wait_ms": 20, "max_in_flight_batches": 2}},
    ) as r:
        worker = r.start_worker()
        results = {}
        try:
            results["triton unreachable"] = _outage(
                r, "triton", _unreachable(r.triton_proxy), lambda: r.triton_proxy.set_mode("pass")
            )
            results["redis unreachable"] = _outage(
                r, "redis", _unreachable(r.redis_proxy), lambda: r.redis_proxy.set_mode("pass")
            )
            results["triton frozen (SIGSTOP)"] = _outage(
                r,
                "frozen",
                lambda: os.kill(triton_pid, signal.SIGSTOP),
                lambda: os.kill(triton_pid, signal.SIGCONT),
            )
            results["broker unreachable"] = _outage(
                r,
                "broker",
                _unreachable(r.broker.proxy),
                lambda: r.broker.proxy.set_mode("pass"),
                broker_down=True,
            )
        finally:
            os.kill(triton_pid, signal.SIGCONT)
            r.broker.proxy.set_mode("pass")
        wait_until(r.all_committed, 180, "the offsets to reach the end after the outages")
        assert worker.poll() is None, "the worker died during an outage:\n" + worker_log_tail(r)
        assert r.stop_worker(worker) == 0, worker_log_tail(r)
        audit = r.audit()
        figures.record("dependency outages", **audit, **{k: v for k, v in results.items()})
        assert audit["lost"] == 0 and audit["streamed_twice"] == 0 and audit["trending_miscounts"] == 0
