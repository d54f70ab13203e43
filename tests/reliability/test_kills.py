"""Processes die: the worker SIGKILLed at random moments, and one of two workers in a group killed.

After each: every post has exactly one record, the trending counts equal what the stored records
imply (no post counted twice), the results stream holds each id once, and the committed offsets
reach the end of the topic.
"""

from __future__ import annotations

import random
import signal
from pathlib import Path

import pytest

from bga_mner.stack.local import LocalStack
from tests.integration.worker_support import make_posts, wait_until
from tests.reliability.conftest import Figures
from tests.reliability.harness import ProxiedBroker, rig, worker_log_tail

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

KILLS = 5


def test_sigkill_five_times_mid_stream_loses_and_double_counts_nothing(
    local_stack: LocalStack,
    proxied_broker: ProxiedBroker,
    tiny_model: tuple[Path, str],
    tmp_path: Path,
    figures: Figures,
) -> None:
    chooser = random.Random(20261202)
    with rig(local_stack, proxied_broker, tmp_path / "rig", tiny_model, partitions=3) as r:
        r.produce(make_posts(5000, prefix="kill"))
        worker = r.start_worker()
        kills = []
        for _ in range(KILLS):
            # Kill at a random moment of the stream: after a random number of newly stored posts.
            target = r.stored() + chooser.randint(150, 700)

            def reached(goal: int = target) -> bool:
                return r.stored() >= goal or r.all_committed()

            wait_until(reached, 180, "progress before a kill")
            assert worker.poll() is None, worker_log_tail(r)
            worker.send_signal(signal.SIGKILL)
            worker.wait(timeout=10)
            kills.append({"stored_at_kill": r.stored(), "committed_at_kill": sum(r.committed().values())})
            worker = r.start_worker()
        wait_until(r.all_committed, 300, "the offsets to reach the end after the kills")
        assert r.stop_worker(worker) == 0, worker_log_tail(r)
        audit = r.audit()
        figures.record("sigkill x5 during 5,000 posts", **audit, kills=len(kills), first_kill=kills[0])
        assert kills[-1]["stored_at_kill"] < len(r.posts), (
            "every kill came after the end: the test proves nothing"
        )
        assert audit["lost"] == 0
        assert audit["streamed_twice"] == 0 and audit["missing_from_stream"] == 0
        assert audit["trending_miscounts"] == 0


def test_one_of_two_workers_killed_the_other_takes_over(
    local_stack: LocalStack,
    proxied_broker: ProxiedBroker,
    tiny_model: tuple[Path, str],
    tmp_path: Path,
    figures: Figures,
) -> None:
    with rig(
        local_stack,
        proxied_broker,
        tmp_path / "rig",
        tiny_model,
        partitions=4,
        sections={"batching": {"max_batch_size": 8, "max_wait_ms": 20, "max_in_flight_batches": 1}},
    ) as r:
        # Slow Triton down (50 ms per request) so the stream outlasts the second worker's group join.
        r.triton_proxy.set_mode("delay", delay_s=0.05)
        r.produce(make_posts(3000, prefix="pair"))
        first = r.start_worker()
        wait_until(lambda: r.stored() >= 200, 120, "the first worker to write")
        second = r.start_worker()
        wait_until(
            lambda: r.log.read_text(errors="replace").count('"partitions assigned"') >= 2,
            90,
            "the second worker to be assigned partitions",
        )
        stored_at_kill = r.stored()
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        wait_until(r.all_committed, 300, "the surviving worker to finish every partition")
        assert r.stop_worker(second) == 0, worker_log_tail(r)
        audit = r.audit()
        figures.record("two workers, one SIGKILLed", **audit, stored_at_kill=stored_at_kill)
        assert stored_at_kill < len(r.posts), "the kill came after the end: the test proves nothing"
        assert audit["lost"] == 0 and audit["streamed_twice"] == 0 and audit["trending_miscounts"] == 0
