"""Memory: the worker's RSS over a 20,000-post stream stays flat (no growth per post processed)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from bga_mner.stack.local import LocalStack
from tests.integration.worker_support import make_posts, wait_until
from tests.reliability.conftest import Figures
from tests.reliability.harness import ProxiedBroker, rig, rss_mb, worker_log_tail

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

POSTS = 20_000
# Allowed growth from the first quarter of the stream to its end: caches (tokenizer, gRPC, Python's
# allocator arenas) settle in the first quarter; a leak of even 1 KB per post would add ~15 MB here.
GROWTH_LIMIT_MB = 12.0


def test_rss_stays_flat_over_twenty_thousand_posts(
    local_stack: LocalStack,
    proxied_broker: ProxiedBroker,
    tiny_model: tuple[Path, str],
    tmp_path: Path,
    figures: Figures,
) -> None:
    with rig(local_stack, proxied_broker, tmp_path / "rig", tiny_model, partitions=3) as r:
        r.produce(make_posts(POSTS, prefix="mem"))
        worker = r.start_worker()
        samples: list[tuple[float, float]] = []  # (posts stored, RSS MB)
        done = threading.Event()

        def sample() -> None:
            while not done.is_set() and worker.poll() is None:
                samples.append((float(r.stored()), rss_mb(worker.pid)))
                time.sleep(0.5)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            wait_until(r.all_committed, 600, "the worker to consume the 20,000 posts")
        finally:
            done.set()
            sampler.join(timeout=10)
        assert r.stop_worker(worker) == 0, worker_log_tail(r)
        working = [(stored, rss) for stored, rss in samples if stored > 0]
        assert len(working) >= 10, "too few samples"
        quarter = next(rss for stored, rss in working if stored >= POSTS / 4)
        start, peak, end = working[0][1], max(rss for _, rss in working), working[-1][1]
        audit = r.audit()
        figures.record(
            "memory over 20,000 posts",
            rss_start_mb=round(start, 1),
            rss_at_quarter_mb=round(quarter, 1),
            rss_peak_mb=round(peak, 1),
            rss_end_mb=round(end, 1),
            samples=len(working),
            lost=audit["lost"],
        )
        assert audit["lost"] == 0
        assert end - quarter < GROWTH_LIMIT_MB, f"RSS grew {end - quarter:.1f} MB after the first quarter"
