"""The local stack: a real Kafka-protocol broker, Redis and Triton on 127.0.0.1 for demos and tests.

Command line: ``bga-mner stack up|down|status [--state-dir DIR] [--model-repository DIR]
[--only kafka,redis,triton] [--model-control explicit|poll|none]``. The state directory
(``--state-dir``, else ``$BGA_STACK_DIR``, else ``.stack``) holds ``stack.json`` (pids, ports,
endpoints, log paths), ``logs/<service>.log`` and ``env`` (the export lines `up` prints).

Python API (the pytest fixtures in tests/fixtures/stack.py and the demo use it)::

    stack = LocalStack(state_dir)                     # die_with_parent=True in tests
    stack.up(model_repository=repo)                   # all three; only="kafka,redis" for a subset
    stack.kafka_bootstrap, stack.redis_url, stack.triton_grpc, stack.triton_http, stack.triton_metrics
    stack.environment()                               # {"BGA_KAFKA_BOOTSTRAP": ..., ...}
    stack.load_model(model_dir)                       # copy into the served repository, load, -> name
    stack.down()                                      # stops exactly the recorded processes

Endpoint variables: BGA_KAFKA_BOOTSTRAP, BGA_REDIS_URL, BGA_TRITON_GRPC, BGA_TRITON_HTTP,
BGA_TRITON_METRICS, and the worker's own settings names BGA_KAFKA__BOOTSTRAP_SERVERS,
BGA_REDIS__URL, BGA_TRITON__URL, so ``eval "$(bga-mner stack up)"`` configures a worker.
Triton runs with ``--model-control-mode=explicit --load-model=*`` by default: every model of
the repository loads at start, and more can be loaded into the running server.
"""

from __future__ import annotations

from bga_mner.stack.local import LocalStack, ServiceStatus, UpResult
from bga_mner.stack.service import StackError

__all__ = ["LocalStack", "ServiceStatus", "StackError", "UpResult"]
