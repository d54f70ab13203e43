"""Where every metric the alerts and the dashboard query comes from, as name sets.

The worker's names are read from its own registry (worker/observability/metrics.py), never listed by
hand. Triton's are the names Triton 24.10 (server 2.51) exposes: test_deploy_triton_metrics.py scrapes a
real tritonserver 2.51 and checks every name here that a CPU server can show; the GPU ones and the
summaries (enabled by --metrics-config=summary_latencies=true, which the manifests set) are from
Triton's metrics documentation. kafka-exporter's and kube-state-metrics' are the few series the alerts use,
from those projects' documented metric lists.
"""

from __future__ import annotations

import re

TRITON_CPU_METRICS = frozenset(
    {
        "nv_inference_request_success",
        "nv_inference_request_failure",
        "nv_inference_count",
        "nv_inference_exec_count",
        "nv_inference_request_duration_us",
        "nv_inference_queue_duration_us",
        "nv_inference_compute_input_duration_us",
        "nv_inference_compute_infer_duration_us",
        "nv_inference_compute_output_duration_us",
        "nv_inference_pending_request_count",
        "nv_cpu_utilization",
        "nv_cpu_memory_total_bytes",
        "nv_cpu_memory_used_bytes",
    }
)
TRITON_SUMMARY_METRICS = frozenset(
    {
        f"nv_inference_{what}_summary_us{suffix}"
        for what in ("request", "queue", "compute_input", "compute_infer", "compute_output")
        for suffix in ("", "_sum", "_count")
    }
)
TRITON_GPU_METRICS = frozenset(
    {
        "nv_gpu_utilization",
        "nv_gpu_memory_total_bytes",
        "nv_gpu_memory_used_bytes",
        "nv_gpu_power_usage",
        "nv_gpu_power_limit",
        "nv_energy_consumption",
    }
)
TRITON_METRICS = TRITON_CPU_METRICS | TRITON_SUMMARY_METRICS | TRITON_GPU_METRICS
# Labels Triton puts on its per-model series (the scrape adds namespace, pod, job, ...).
TRITON_FAILURE_REASONS = frozenset({"REJECTED", "CANCELED", "BACKEND", "OTHER"})

KAFKA_EXPORTER_METRICS = frozenset(
    {"kafka_consumergroup_lag", "kafka_consumergroup_current_offset", "kafka_topic_partition_current_offset"}
)
KUBE_STATE_METRICS = frozenset(
    {"kube_pod_container_status_restarts_total", "kube_pod_container_status_waiting_reason"}
)
PROMETHEUS_METRICS = frozenset({"up"})
# Labels the scrape (Prometheus Operator, ServiceMonitor) adds to every worker and Triton series.
TARGET_LABELS = frozenset({"namespace", "pod", "job", "instance", "container", "endpoint", "service"})


def worker_metrics() -> frozenset[str]:
    """Every series name the worker can expose, from its registry (counters as _total, histograms' parts)."""
    from worker.observability.metrics import WorkerMetrics

    names: set[str] = set()
    for family in WorkerMetrics().registry.collect():
        if family.type == "counter":
            names.add(f"{family.name}_total")
        elif family.type == "histogram":
            names.update(f"{family.name}{suffix}" for suffix in ("_bucket", "_sum", "_count"))
        else:
            names.add(family.name)
    return frozenset(names)


_IDENTIFIER = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"')
_LABEL_LISTS = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_NUMBERS = re.compile(r"(?<![a-zA-Z0-9_:])[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")
_NOT_METRICS = frozenset(
    {
        # PromQL functions, aggregations and keywords the queries use
        "sum",
        "max",
        "min",
        "avg",
        "count",
        "rate",
        "irate",
        "increase",
        "delta",
        "deriv",
        "absent",
        "max_over_time",
        "min_over_time",
        "histogram_quantile",
        "clamp_min",
        "clamp_max",
        "vector",
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "time",
        "changes",
        "resets",
        "label_replace",
        "topk",
        "bottomk",
        "abs",
    }
)


def metric_names(promql: str) -> set[str]:
    """The metric names a PromQL expression selects (strings, label lists, matchers and ranges removed)."""
    text = _STRINGS.sub(" ", promql.replace("$__rate_interval", "5m"))
    text = _LABEL_LISTS.sub(" ", text)
    text = _MATCHERS.sub(" ", text)
    text = _RANGES.sub(" ", text)
    text = _NUMBERS.sub(" ", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        token = match.group(0)
        before = text[: match.start()].rstrip()
        if token in _NOT_METRICS or before.endswith("$"):
            continue
        names.add(token)
    return names
