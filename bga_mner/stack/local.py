"""`LocalStack`: the Python API behind `bga-mner stack`, used by the pytest fixtures and the demo.

Every process it starts is recorded in the state directory's JSON file before `up` returns, and
`down` stops exactly the recorded processes, so a stack started in one shell (or test session)
can be inspected and stopped from another.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from bga_mner.stack import process
from bga_mner.stack.kafka import KafkaBroker
from bga_mner.stack.models import load_model
from bga_mner.stack.ports import free_ports
from bga_mner.stack.redis import RedisServer
from bga_mner.stack.service import Service, StackError
from bga_mner.stack.state import ServiceRecord, StackState, default_state_dir, load_state, locked, save_state
from bga_mner.stack.triton import ModelControl, TritonServer

SERVICE_NAMES: tuple[str, ...] = ("kafka", "redis", "triton")
_PORT_RETRIES = 3


@dataclass(frozen=True)
class ServiceStatus:
    record: ServiceRecord
    alive: bool


@dataclass(frozen=True)
class UpResult:
    state: StackState
    started: list[str]
    already_running: list[str]
    seconds: dict[str, float]


def parse_only(value: str | Iterable[str] | None) -> list[str]:
    """`kafka,redis` -> ["kafka", "redis"] in start order; None/empty -> all three."""
    if value is None:
        return list(SERVICE_NAMES)
    names = [n.strip() for n in value.split(",")] if isinstance(value, str) else [n.strip() for n in value]
    names = [n for n in names if n]
    unknown = sorted(set(names) - set(SERVICE_NAMES))
    if unknown:
        raise StackError(f"unknown service(s) {', '.join(unknown)}; choose from {', '.join(SERVICE_NAMES)}")
    return [n for n in SERVICE_NAMES if n in names] or list(SERVICE_NAMES)


class LocalStack:
    """Kafka-protocol broker, Redis and Triton on 127.0.0.1, on free ports, owned by one state directory.

    ``die_with_parent`` makes the kernel stop the servers when the starting process dies; the test
    fixtures use it, the CLI does not (its servers must outlive `bga-mner stack up`).
    """

    def __init__(
        self,
        state_dir: Path | str | None = None,
        *,
        ready_timeout: float = 60.0,
        stop_grace: float = 10.0,
        die_with_parent: bool = False,
    ) -> None:
        self.state_dir = Path(state_dir) if state_dir is not None else default_state_dir()
        self.ready_timeout = ready_timeout
        self.stop_grace = stop_grace
        self.die_with_parent = die_with_parent

    # ---------------------------------------------------------------- queries
    @property
    def state(self) -> StackState:
        return load_state(self.state_dir)

    def status(self) -> dict[str, ServiceStatus]:
        return {
            name: ServiceStatus(record, process.is_alive(record.pid, record.start_ticks))
            for name, record in self.state.services.items()
        }

    def endpoint(self, variable: str) -> str:
        """One endpoint by its environment-variable name, e.g. ``BGA_KAFKA_BOOTSTRAP``."""
        for record in self.state.services.values():
            if variable in record.endpoints:
                return record.endpoints[variable]
        raise StackError(f"{variable} unknown: is the service running in {self.state_dir}?")

    def environment(self) -> dict[str, str]:
        """Every endpoint variable of the running services (what `stack up` prints as exports)."""
        env: dict[str, str] = {}
        for record in self.state.services.values():
            env.update(record.endpoints)
        return env

    @property
    def kafka_bootstrap(self) -> str:
        return self.endpoint("BGA_KAFKA_BOOTSTRAP")

    @property
    def redis_url(self) -> str:
        return self.endpoint("BGA_REDIS_URL")

    @property
    def triton_grpc(self) -> str:
        return self.endpoint("BGA_TRITON_GRPC")

    @property
    def triton_http(self) -> str:
        return self.endpoint("BGA_TRITON_HTTP")

    @property
    def triton_metrics(self) -> str:
        return self.endpoint("BGA_TRITON_METRICS")

    @property
    def model_repository(self) -> Path:
        record = self.state.services.get("triton")
        if record is None:
            raise StackError(f"Triton is not running in {self.state_dir}")
        return Path(record.settings["model_repository"])

    def load_model(self, src: Path | str, name: str | None = None, timeout: float = 120.0) -> str:
        """Serve a model directory on the running Triton (explicit model control); returns its name."""
        record = self.state.services.get("triton")
        if record is None:
            raise StackError(f"Triton is not running in {self.state_dir}")
        return load_model(
            record.endpoints["BGA_TRITON_GRPC"],
            Path(record.settings["model_repository"]),
            Path(src),
            name,
            timeout=timeout,
            server_log=Path(record.log),
        )

    # ---------------------------------------------------------------- up / down
    def _service(self, name: str, model_repository: Path | None, model_control: ModelControl) -> Service:
        if name == "kafka":
            return KafkaBroker()
        if name == "redis":
            return RedisServer()
        repository = model_repository if model_repository is not None else self.state_dir / "model_repository"
        return TritonServer(repository, model_control)

    def up(
        self,
        only: str | Iterable[str] | None = None,
        model_repository: Path | str | None = None,
        model_control: ModelControl = "explicit",
    ) -> UpResult:
        """Start what is not running yet and wait until each answers; safe to call twice.

        On any failure the services started by this call are stopped again and a StackError
        carries the tail of the failing service's log.
        """
        names = parse_only(only)
        repository = Path(model_repository) if model_repository is not None else None
        with locked(self.state_dir):
            state = load_state(self.state_dir)
            started: list[str] = []
            running: list[str] = []
            seconds: dict[str, float] = {}
            try:
                for name in names:
                    service = self._service(name, repository, model_control)
                    record = state.services.get(name)
                    if record is not None and process.is_alive(record.pid, record.start_ticks):
                        self._check_compatible(record, service, explicit=repository is not None)
                        running.append(name)
                        continue
                    began = time.monotonic()
                    state.services[name] = self._start(service)
                    seconds[name] = time.monotonic() - began
                    started.append(name)
                    save_state(self.state_dir, state)
            except BaseException:
                for name in reversed(started):
                    record = state.services.pop(name)
                    process.terminate(record.pid, record.start_ticks, self.stop_grace)
                save_state(self.state_dir, state)
                raise
            return UpResult(state, started, running, seconds)

    def down(self) -> list[str]:
        """Stop exactly the recorded processes and their children; returns the names stopped.

        Raises StackError when a process survives SIGKILL, so tests cannot pass while leaking one.
        """
        with locked(self.state_dir):
            state = load_state(self.state_dir)
            stopped: list[str] = []
            survivors: dict[str, list[int]] = {}
            for name in reversed(list(state.services)):
                record = state.services[name]
                if process.is_alive(record.pid, record.start_ticks):
                    left = process.terminate(record.pid, record.start_ticks, self.stop_grace)
                    if left:
                        survivors[name] = left
                    stopped.append(name)
                del state.services[name]
                save_state(self.state_dir, state)
            if survivors:
                raise StackError(f"processes still alive after SIGKILL: {survivors}")
            return stopped

    # ---------------------------------------------------------------- internals
    @staticmethod
    def _check_compatible(record: ServiceRecord, service: Service, explicit: bool) -> None:
        wanted = service.settings()
        differs = {k: v for k, v in wanted.items() if record.settings.get(k) != v}
        if explicit and differs:
            raise StackError(
                f"{record.name} is already running (pid {record.pid}) with {record.settings}; "
                f"asked for {wanted}: run `bga-mner stack down` first"
            )

    def _start(self, service: Service) -> ServiceRecord:
        service.prepare(self.state_dir)
        log_path = (self.state_dir / "logs" / f"{service.name}.log").resolve()
        log_path.parent.mkdir(parents=True, exist_ok=True)
        for attempt in range(1, _PORT_RETRIES + 1):
            ports = dict(zip(service.port_names, free_ports(len(service.port_names)), strict=True))
            argv = service.argv(ports, self.state_dir)
            with open(log_path, "a", encoding="utf-8") as log:
                log.write(f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S')} start (attempt {attempt}): {argv}\n")
            log_offset = log_path.stat().st_size
            try:
                child = process.spawn(
                    argv, log_path, env=service.environment(), die_with_parent=self.die_with_parent
                )
            except OSError as exc:
                raise StackError(f"{service.name}: cannot execute {argv[0]}: {exc}") from exc
            record = ServiceRecord(
                name=service.name,
                pid=child.pid,
                start_ticks=process.start_ticks(child.pid),
                argv=argv,
                ports=ports,
                endpoints=service.endpoints(ports),
                log=str(log_path),
                started_at=time.time(),
                settings=service.settings(),
            )
            try:
                problem = self._wait_ready(service, record, child)
            except BaseException:  # Ctrl-C or a probe bug: never leave an unrecorded process
                process.terminate(record.pid, record.start_ticks, self.stop_grace)
                raise
            if problem is None:
                return record
            process.terminate(record.pid, record.start_ticks, self.stop_grace)
            child.poll()
            new_log = log_path.read_bytes()[log_offset:].decode("utf-8", errors="replace")
            if "address already in use" in new_log.lower() and attempt < _PORT_RETRIES:
                continue  # lost the race for a free port: try fresh ones
            reason = service.failure_reason(new_log)
            raise StackError(
                f"{service.name} did not start ({problem})"
                + (f": {reason}" if reason else "")
                + f" (full log: {log_path})"
            )
        raise AssertionError("unreachable")

    def _wait_ready(
        self, service: Service, record: ServiceRecord, child: subprocess.Popen[bytes]
    ) -> str | None:
        deadline = time.monotonic() + self.ready_timeout
        while True:
            exit_code = child.poll()
            if exit_code is not None:
                return f"it exited with status {exit_code}"
            if service.probe(record.ports):
                return None
            if time.monotonic() > deadline:
                return f"not ready after {self.ready_timeout:.0f} s"
            time.sleep(0.1)
