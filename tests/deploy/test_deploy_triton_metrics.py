"""The Triton metrics the alerts rely on, scraped from a real tritonserver 2.51 (= the 24.10 container).

The alert tests feed promtool series shaped like Triton's; this checks that shape against the real
server: names, the per-model labels, and the `reason` label on failures that made the previous error
rule silent (Triton exports one failure series per reason from the moment the model loads). It serves
the tiny test model on the local stack's CPU Triton, sends one request and reads /metrics.
"""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from tests.deploy.conftest import DEPLOY
from tests.deploy.metric_sources import TARGET_LABELS, TRITON_CPU_METRICS, TRITON_FAILURE_REASONS

MODEL = "bga_mner_metrics_probe"
# One sample line of the text exposition format; read as written (prometheus_client's parser would
# rename counters to *_total, which is not what Triton exposes or what Prometheus stores).
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+\S+")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def _parse(exposition: str) -> dict[str, list[dict[str, str]]]:
    series: dict[str, list[dict[str, str]]] = {}
    for line in exposition.splitlines():
        match = _SAMPLE.match(line)
        if match:
            series.setdefault(match.group(1), []).append(dict(_LABEL.findall(match.group(2) or "")))
    return series


def _infer(client: Any, input_ids: list[int]) -> None:
    import tritonclient.grpc as grpcclient

    inputs = []
    for name in ("input_ids", "attention_mask", "casing_ids"):
        values = input_ids if name == "input_ids" else [1 if name == "attention_mask" else 0] * len(input_ids)
        array = np.array([values], dtype=np.int64)
        tensor = grpcclient.InferInput(name, list(array.shape), "INT64")
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    client.infer(MODEL, inputs)


@pytest.fixture(scope="module")
def triton_series(tiny_model_repository: Path, local_stack: Any) -> dict[str, list[dict[str, str]]]:
    """{metric name: [label sets]} of the probe model's series on a real Triton, after one good request."""
    import tritonclient.grpc as grpcclient

    served = local_stack.load_model(tiny_model_repository / "bga_mner", MODEL)
    assert served == MODEL
    client = grpcclient.InferenceServerClient(url=local_stack.triton_grpc)
    try:
        _infer(client, [101, 2023, 102])
        with urllib.request.urlopen(local_stack.triton_metrics, timeout=10) as response:
            text = response.read().decode()
    finally:
        client.unload_model(MODEL)
        client.close()
    return {
        name: [labels for labels in label_sets if labels.get("model", MODEL) == MODEL]
        for name, label_sets in _parse(text).items()
    }


def test_failures_carry_a_reason_label(triton_series: dict[str, list[dict[str, str]]]) -> None:
    failures = triton_series["nv_inference_request_failure"]
    assert {labels["reason"] for labels in failures} == TRITON_FAILURE_REASONS
    assert all("reason" not in labels for labels in triton_series["nv_inference_request_success"])


def test_cpu_metric_names_are_what_triton_exposes(triton_series: dict[str, list[dict[str, str]]]) -> None:
    assert set(triton_series) >= TRITON_CPU_METRICS, sorted(TRITON_CPU_METRICS - set(triton_series))


def test_alert_test_series_have_the_real_label_names(triton_series: dict[str, list[dict[str, str]]]) -> None:
    """Each nv_* series in alerts.test.yaml = Triton's labels + the scrape's target labels, nothing else."""
    tests = yaml.safe_load((DEPLOY / "prometheus" / "alerts.test.yaml").read_text())
    checked = 0
    for case in tests["tests"]:
        for entry in case["input_series"]:
            name, _, rest = entry["series"].partition("{")
            if not name.startswith("nv_"):
                continue
            labels = {pair.split("=", 1)[0] for pair in rest.rstrip("}").split(",")}
            real_name = name if name in triton_series else None
            if real_name is None:  # summaries: only with --metrics-config=summary_latencies=true
                assert name.endswith("_summary_us"), name
                expected = {"model", "version", "quantile"}
            else:
                expected = set().union(*(set(labels) for labels in triton_series[real_name]))
            assert labels - TARGET_LABELS == expected, (entry["series"], expected)
            checked += 1
    assert checked >= 10
