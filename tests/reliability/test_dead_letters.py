"""A dead letter the broker never acknowledged is never committed past, not even at shutdown.

Only the dead-letter producer's connections are black-holed (the proxy picks them by the client id
in their first request) once the worker runs; the consumer keeps working. The bad message's offset
must hold the commit back while its dead letter is unacknowledged, across a SIGTERM and a restart,
and be committed once the dead letter is acknowledged.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bga_mner.stack.local import LocalStack
from tests.integration.worker_support import make_posts, produce, wait_until
from tests.reliability.conftest import Figures
from tests.reliability.harness import ProxiedBroker, dead_letter_reasons, rig, worker_log_tail

pytestmark = [pytest.mark.integration, pytest.mark.reliability]


@pytest.fixture
def dlq_cut_broker(tmp_path: Path) -> Iterator[ProxiedBroker]:
    (tmp_path / "broker-dlq").mkdir()
    broker = ProxiedBroker(tmp_path / "broker-dlq", selector=lambda first: b"bga-mner-worker-dlq" in first)
    yield broker
    broker.close()


def test_a_message_is_not_committed_until_its_dead_letter_is_acknowledged(
    local_stack: LocalStack,
    dlq_cut_broker: ProxiedBroker,
    tiny_model: tuple[Path, str],
    tmp_path: Path,
    figures: Figures,
) -> None:
    with rig(local_stack, dlq_cut_broker, tmp_path / "rig", tiny_model, partitions=1) as r:
        good = make_posts(4, prefix="dlq")
        messages = [
            (good[0]["id"].encode(), json.dumps(good[0]).encode()),
            (good[1]["id"].encode(), json.dumps(good[1]).encode()),
            (b"bad", b"this is not json"),
            (good[2]["id"].encode(), json.dumps(good[2]).encode()),
            (good[3]["id"].encode(), json.dumps(good[3]).encode()),
        ]
        worker = r.start_worker()  # it checks every dependency, the DLQ producer's broker too, at start
        wait_until(lambda: '"partitions assigned"' in r.log.read_text(errors="replace"), 90, "an assignment")
        dlq_cut_broker.proxy.set_mode("blackhole")  # from now on, the DLQ producer's connections only
        produce(dlq_cut_broker.bootstrap, r.topic, messages, partition=0)
        r.posts.extend(good)
        wait_until(lambda: r.stored() == 4, 90, "the good posts to be written")
        time.sleep(4.0)
        held = r.committed()
        assert held == {0: 2}, f"committed past the unacknowledged dead letter: {held}\n{worker_log_tail(r)}"
        assert r.stop_worker(worker) == 0, worker_log_tail(r)  # the shutdown's last flush fails too
        after_shutdown = r.committed()
        assert after_shutdown == {0: 2}, f"the shutdown committed past it: {after_shutdown}"

        dlq_cut_broker.proxy.cut()  # drop what the black hole held: that worker is gone
        dlq_cut_broker.proxy.set_mode("pass")
        worker = r.start_worker()
        began = time.monotonic()
        wait_until(lambda: r.committed() == {0: 5}, 90, "the offsets to reach the end once the DLQ is back")
        recovery_s = time.monotonic() - began
        assert r.stop_worker(worker) == 0, worker_log_tail(r)
        reasons = dead_letter_reasons(r, expected=1)
        figures.record(
            "dead-letter producer cut off",
            committed_while_cut=held[0],
            committed_after_shutdown=after_shutdown[0],
            dlq_producer_connections=dlq_cut_broker.proxy.selected_seen,
            seconds_to_commit_after_restore=round(recovery_s, 2),
        )
        assert reasons == {"bad": "invalid_json"}
        assert dlq_cut_broker.proxy.selected_seen >= 1, "no dead-letter connection went through the proxy"
