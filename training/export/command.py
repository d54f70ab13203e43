"""`bga-mner export`: a checkpoint -> one version of a Triton model repository.

Every target gets the same ONNX graph of the text-only inference path, the tokenizer, the manifest
(labels, window sizes, CRF, model card) and a config.pbtxt rendered from typed objects. Before anything
is published, the exported graph is run through the serving pipeline next to the PyTorch model
(training/export/parity.py): an export that would tag posts differently is an error, not a file.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from training.export.targets import PYTHON_BACKEND_MODEL, Target
from training.export.tensorrt_build import MIN_SEQUENCE, TensorRTUnavailable

if TYPE_CHECKING:
    from bga_mner.model_repository import Manifest
    from training.checkpoint import InferenceBundle
    from training.export.precision import PrecisionChoice

InstanceKind = Literal["KIND_AUTO", "KIND_CPU", "KIND_GPU"]
DEFAULT_KIND: dict[Target, InstanceKind] = {
    Target.TENSORRT: "KIND_GPU",
    Target.ONNXRUNTIME: "KIND_AUTO",
    Target.PYTHON: "KIND_CPU",
}
PYTHON_ENV_LINK = "python_env"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--checkpoint", type=Path, required=True, help="training run directory (checkpoint.pt)"
    )
    parser.add_argument("--target", choices=[t.value for t in Target], required=True)
    parser.add_argument("--out", type=Path, required=True, help="model repository directory")
    parser.add_argument("--model-name", default="bga_mner")
    parser.add_argument("--version", type=int, default=None, help="version number (default: next free)")
    parser.add_argument("--max-batch-size", type=int, default=64)
    parser.add_argument(
        "--max-length", type=int, default=None, help="subwords per window (default: the checkpoint's)"
    )
    parser.add_argument(
        "--precision",
        choices=["auto", "fp32", "int8"],
        default="auto",
        help="CPU targets: auto = int8 when its dev F1 is within 0.3 of fp32's, else fp32 (measured on "
        "the checkpoint's dev split, recorded in the card); tensorrt builds an FP16 plan from the fp32 graph",
    )
    parser.add_argument("--int8", action="store_true", help="same as --precision int8")
    parser.add_argument(
        "--graph",
        choices=["lean", "training"],
        default="lean",
        help="lean = the inference graph rebuilt from the trained weights (training/export/lean.py); "
        "training = BGAMNER.emissions_text_only as the trainer runs it",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="benchmark data for --precision auto (default: BGA_DATA_DIR)",
    )
    parser.add_argument("--opset", type=int, default=17)
    parser.add_argument("--instance-kind", choices=["auto", "cpu", "gpu"], default=None)
    parser.add_argument("--instances", type=int, default=1, help="Triton model instances")
    parser.add_argument("--max-queue-delay-us", type=int, default=2000, help="dynamic batcher delay")
    parser.add_argument(
        "--intra-op-threads", type=int, default=None, help="python target: ONNX Runtime threads per instance"
    )
    parser.add_argument(
        "--python-env",
        type=Path,
        default=None,
        help="python target: environment (numpy<2, onnxruntime) Triton's python backend runs the model "
        "in (EXECUTION_ENV_PATH, linked next to config.pbtxt); default: this environment, if it qualifies",
    )
    parser.add_argument(
        "--skip-plan",
        action="store_true",
        help="tensorrt target: write everything but model.plan (build it later with "
        "deploy/tensorrt/build_plan.sh in the serving TensorRT container)",
    )
    parser.add_argument("--no-parity", action="store_true", help="skip the PyTorch-vs-export check")
    parser.add_argument("--force", action="store_true", help="replace an existing version")


def _fail(message: str, code: int = 2) -> int:
    print(f"bga-mner export: {message}", file=sys.stderr)
    return code


def _check_arguments(args: argparse.Namespace, target: Target) -> str | None:
    if args.int8:
        args.precision = "int8"
    if args.precision == "int8" and target is Target.TENSORRT:
        return "--int8 is for the CPU targets (onnxruntime, python); TensorRT INT8 needs calibration"
    if args.skip_plan and target is not Target.TENSORRT:
        return "--skip-plan only applies to --target tensorrt"
    if args.python_env is not None and target is not Target.PYTHON:
        return "--python-env only applies to --target python"
    if args.python_env is not None and not args.python_env.is_dir():
        return f"--python-env {args.python_env} is not a directory"
    if args.max_batch_size < 1:
        return "--max-batch-size must be >= 1"
    if target is Target.PYTHON and not PYTHON_BACKEND_MODEL.is_file():
        return f"the python-backend model {PYTHON_BACKEND_MODEL} is missing from this installation"
    return None


def running_environment_problem() -> str | None:
    """Why this Python environment cannot run the python-backend model (None when it can).

    Triton's python backend runs ``model.py`` in an isolated interpreter that sees only the
    environment named by EXECUTION_ENV_PATH; without one, the model fails to load with
    ``No module named 'numpy'``. numpy 2 silently corrupts tensors there, so it must be numpy<2.
    """
    import importlib.util

    import numpy

    if int(numpy.__version__.split(".")[0]) >= 2:
        return f"it has numpy {numpy.__version__} (the python backend needs numpy<2)"
    if importlib.util.find_spec("onnxruntime") is None:
        return "it has no onnxruntime"
    return None


def run(args: argparse.Namespace) -> int:
    target = Target(args.target)
    if target is Target.PYTHON and args.python_env is None:
        why_not = running_environment_problem()
        if why_not is not None:
            return _fail(
                "the python target needs an environment for Triton's python backend, and this one "
                f"({sys.prefix}) does not qualify: {why_not}. Pass --python-env DIR (numpy<2, onnxruntime)"
            )
        args.python_env = Path(sys.prefix)
    problem = _check_arguments(args, target)
    if problem:
        return _fail(problem)
    if target is Target.TENSORRT and not args.skip_plan:
        from training.export.tensorrt_build import load_tensorrt

        try:  # before the (slow) checkpoint load: say at once that this machine cannot build a plan
            load_tensorrt()
        except TensorRTUnavailable as error:
            return _fail(str(error))
    if not (args.checkpoint / "checkpoint.pt").is_file():
        return _fail(f"{args.checkpoint} is not a checkpoint directory (no checkpoint.pt)")
    try:
        return _export(args, target)
    except TensorRTUnavailable as error:
        return _fail(str(error))
    except FileExistsError as error:
        return _fail(str(error))


def _export(args: argparse.Namespace, target: Target) -> int:
    import torch

    from bga_mner.inference.onnx_local import OnnxBackend
    from bga_mner.model_repository import LoadedRepository, config_for_manifest
    from bga_mner.preprocessing import SubwordEncoder
    from training.checkpoint import load_for_inference
    from training.export import parity
    from training.export.lean import FP32_NODE_PREFIXES
    from training.export.onnx_export import export_onnx
    from training.export.plan_parity_data import PARITY_FILE, write_plan_parity
    from training.export.repository_writer import StagedVersion, next_version
    from training.export.tensorrt_build import (
        FP32_LAYERS_FILE,
        PlanProfile,
        build_plan,
        sequence_buckets,
        write_fp32_layers,
    )
    from training.export.warmup import with_warmup_files

    began = time.monotonic()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    try:
        bundle = load_for_inference(args.checkpoint)
    except (OSError, ValueError, KeyError) as error:  # missing files, a foreign or stale checkpoint format
        return _fail(f"cannot load the checkpoint {args.checkpoint}: {type(error).__name__}: {error}")
    max_length = args.max_length or bundle.max_length
    if bundle.stride >= max_length - 2:
        return _fail(f"--max-length {max_length} leaves no room for the checkpoint's stride {bundle.stride}")
    version = args.version or next_version(args.out / args.model_name)
    print(f"exporting {args.checkpoint} -> {args.out / args.model_name / str(version)} ({target.value})")

    with (
        StagedVersion(args.out, args.model_name, version, force=args.force) as staged,
        tempfile.TemporaryDirectory() as scratch,
    ):
        graph, graph_note = _inference_graph(bundle, args.graph)
        print(f"graph: {graph_note}")
        fp32_path = export_onnx(graph, Path(scratch) / "model.fp32.onnx", opset=args.opset)
        choice, onnx_path = _precision(args, target, bundle, fp32_path, Path(scratch), max_length)
        staged.add_file(onnx_path, "model.onnx")

        card: dict[str, Any] = {
            "variant": bundle.card.variant,
            "dataset": bundle.card.dataset,
            "epoch": bundle.card.epoch,
            "training_git_commit": bundle.card.git_commit,
            "graph": graph_note,
            "precision": choice.precision if target is not Target.TENSORRT else "fp16",
            "precision_choice": choice.to_card(),
            "onnx_opset": args.opset,
            "max_batch_size": args.max_batch_size,
        }
        if not args.no_parity:
            # The candidate is what is about to be published: this manifest (its labels, window sizes
            # and serialised CRF) with the graph behind the worker's own ONNX Runtime backend. The fp32
            # graph must reproduce the training graph; an int8 graph is reported, not held to it.
            manifest = _manifest(args, target, version, max_length, bundle, card, began)
            candidate_repo = LoadedRepository(
                manifest,
                SubwordEncoder.from_file(bundle.tokenizer_json, max_length, bundle.stride),
                manifest.crf_params(),
                staged.version_dir,
            )
            reference = parity.tag_posts(
                parity.checkpoint_repository(bundle, manifest, max_length), parity.TorchBackend(bundle.module)
            )
            for name, path in (("fp32", fp32_path), (choice.precision, onnx_path)):
                if name != "fp32" and path == fp32_path:
                    continue
                candidate = parity.tag_posts(candidate_repo, OnnxBackend(path, threads=2))
                tolerance = 1e-4 if name == "fp32" else None
                report = parity.compare(reference, candidate, tolerance)
                print(
                    f"parity ({name} ONNX Runtime vs PyTorch training graph, through the Tagger): "
                    f"{report.summary()}"
                )
                if not report.ok and tolerance is not None:
                    print("\n".join(report.details[:10]), file=sys.stderr)
                    return _fail(
                        "the exported graph does not reproduce the PyTorch model; nothing written", 1
                    )
                card["parity" if name == "fp32" else "parity_int8"] = {
                    "posts": report.posts,
                    "max_abs_diff": report.max_abs_diff,
                    "identical_posts": report.posts - len(report.mismatched_posts),
                }

        if target is Target.PYTHON:
            staged.add_file(PYTHON_BACKEND_MODEL, "model.py")
        fp32_layers: list[str] = []
        if target is Target.TENSORRT:  # the sampler's layers stay fp32 in the FP16 plan
            fp32_layers = write_fp32_layers(
                onnx_path, staged.version_dir / FP32_LAYERS_FILE, FP32_NODE_PREFIXES
            )
        if target is Target.TENSORRT and not args.skip_plan:
            build_plan(
                onnx_path,
                staged.version_dir / "model.plan",
                PlanProfile(args.max_batch_size, max_length, min_length=MIN_SEQUENCE),
                fp32_layers=fp32_layers,
            )

        if target is Target.TENSORRT:
            # What deploy/tensorrt/plan_parity.py checks the plan against, where it is built.
            write_plan_parity(
                LoadedRepository(
                    _manifest(args, target, version, max_length, bundle, card, began),
                    SubwordEncoder.from_file(bundle.tokenizer_json, max_length, bundle.stride),
                    bundle.crf,
                    staged.version_dir,
                ),
                fp32_path,
                staged.version_dir / PARITY_FILE,
                sequence_buckets(max_length),
                args.max_batch_size,
            )
        if target is Target.TENSORRT and args.skip_plan:
            card["plan"] = "not built: run deploy/tensorrt/build_plan.sh in the serving TensorRT container"
        manifest = _manifest(args, target, version, max_length, bundle, card, began)
        parameters: dict[str, str] = {}
        links: dict[str, Path] = {}
        if target is Target.PYTHON and args.python_env is not None:
            parameters["EXECUTION_ENV_PATH"] = f"$$TRITON_MODEL_DIRECTORY/{PYTHON_ENV_LINK}"
            links[PYTHON_ENV_LINK] = args.python_env
        if target is Target.PYTHON and args.intra_op_threads is not None:
            parameters["INTRA_OP_THREADS"] = str(args.intra_op_threads)
        kind = DEFAULT_KIND[target] if args.instance_kind is None else _kind(args.instance_kind)
        config = config_for_manifest(
            manifest,
            max_batch_size=args.max_batch_size,
            kind=kind,
            count=args.instances,
            max_queue_delay_microseconds=args.max_queue_delay_us,
            parameters=parameters,
            warmup_length=min(32, max_length),
        )
        warmup_files: dict[str, bytes] = {}
        if target is Target.TENSORRT:  # real-text warm-up per sequence bucket (training/export/warmup.py)
            config, warmup_files = with_warmup_files(
                config,
                bundle.tokenizer_json,
                warmup_lengths(max_length),
                max(config.model_warmup[0].batch_size if config.model_warmup else 1, 1),
            )
        version_dir = staged.commit(manifest, bundle.tokenizer_json, config, links, warmup_files)

    files = ", ".join(sorted(p.name for p in version_dir.iterdir()))
    print(
        f"wrote {version_dir} ({files}) and {version_dir.parent / 'config.pbtxt'} "
        f"in {time.monotonic() - began:.1f} s"
    )
    if target is Target.TENSORRT and args.skip_plan:
        print(
            "next: build model.plan with "
            f"deploy/tensorrt/build_plan.sh {args.out} {args.model_name} {version}"
        )
    return 0


def warmup_lengths(max_length: int) -> tuple[int, ...]:
    """TensorRT warms up at every sequence bucket (each shape picks its own tactics). The CPU targets keep
    config_for_manifest's zero-data warm-up (nothing picks kernels on first use there)."""
    from training.export.tensorrt_build import sequence_buckets

    return sequence_buckets(max_length)


def _inference_graph(bundle: InferenceBundle, graph: str) -> tuple[Any, str]:
    """The module to trace: the lean inference graph, or the training graph (asked for, or when the lean
    builder does not know this model)."""
    if graph == "training":
        return bundle.module, "training (BGAMNER.emissions_text_only)"
    from training.export.lean import UnsupportedModel, build_lean

    try:
        return build_lean(bundle.module), "lean (training/export/lean.py)"
    except UnsupportedModel as error:
        return bundle.module, f"training (BGAMNER.emissions_text_only; lean not possible: {error})"


def _precision(
    args: argparse.Namespace,
    target: Target,
    bundle: InferenceBundle,
    fp32_path: Path,
    scratch: Path,
    max_length: int,
) -> tuple[PrecisionChoice, Path]:
    """The precision for the CPU targets and the graph to serve (``--precision``; auto measures the
    int8 graphs against fp32 on the dev split, `training.export.precision`). The int8 graphs are
    written next to ``fp32_path``."""
    from bga_mner.preprocessing import SubwordEncoder
    from training.export.precision import (
        FP32,
        INT8,
        INT8_FFN_FP32,
        PrecisionChoice,
        choose_precision,
        read_eval_split,
    )
    from training.export.quantize import ffn_output_matmuls, quantize_int8

    if target is Target.TENSORRT or args.precision == "fp32":
        reason = "asked for" if args.precision == "fp32" else "tensorrt builds FP16 from fp32"
        return PrecisionChoice(FP32, reason), fp32_path
    graphs = {INT8: quantize_int8(fp32_path, scratch / "model.int8.onnx")}
    if args.precision == "int8":
        return PrecisionChoice(INT8, "asked for (--precision int8)"), graphs[INT8]
    keep = ffn_output_matmuls(fp32_path)
    if keep:
        graphs[INT8_FFN_FP32] = quantize_int8(fp32_path, scratch / "model.int8-ffn-fp32.onnx", keep_fp32=keep)
    encoder = SubwordEncoder.from_file(bundle.tokenizer_json, max_length, bundle.stride)
    dataset = str(bundle.card.dataset)
    choice = choose_precision(
        fp32_path,
        list(graphs.items()),
        dev=read_eval_split(dataset, "dev", args.data_dir),
        test=read_eval_split(dataset, "test", args.data_dir),
        encoder=encoder,
        labels=list(bundle.labels),
        crf=bundle.crf,
    )
    print(
        f"precision: {choice.precision} ({choice.reason}; dev F1 {choice.dev_f1}, test F1 {choice.test_f1})"
    )
    return choice, graphs.get(choice.precision, fp32_path)


def _manifest(
    args: argparse.Namespace,
    target: Target,
    version: int,
    max_length: int,
    bundle: InferenceBundle,
    card: dict[str, Any],
    began: float,
) -> Manifest:
    from bga_mner.model_repository import (
        CRFSpec,
        Manifest,
        ModelCard,
        PreprocessingSpec,
        standard_inputs,
        standard_outputs,
    )
    from training.checkpoint import git_commit

    return Manifest(
        model_name=args.model_name,
        model_version=version,
        target=target.value,
        labels=bundle.labels,
        max_length=max_length,
        # The TensorRT profile's range (tensorrt_build.PlanProfile, deploy/tensorrt/build_plan.sh):
        # the worker pads to it and never sends larger batches.
        min_length=MIN_SEQUENCE if target is Target.TENSORRT else 1,
        max_batch_size=args.max_batch_size,
        sequence_buckets=list(warmup_lengths(max_length)) if target is Target.TENSORRT else None,
        stride=bundle.stride,
        inputs=standard_inputs(),
        outputs=standard_outputs(len(bundle.labels)),
        crf=CRFSpec.from_params(bundle.crf),
        preprocessing=PreprocessingSpec(casing_features=True),
        card=ModelCard(
            backbone=bundle.card.backbone,
            image_encoder=bundle.card.image_encoder,
            training_data_sha256=bundle.card.training_data_sha256,
            dev_f1=bundle.card.dev_f1,  # percent, as everywhere
            test_f1=bundle.card.test_f1,
            exported_at=datetime.now(UTC),
            export_seconds=round(time.monotonic() - began, 3),
            git_commit=git_commit(),
            extra=dict(card),
        ),
    )


def _kind(name: str) -> InstanceKind:
    kinds: dict[str, InstanceKind] = {"auto": "KIND_AUTO", "cpu": "KIND_CPU", "gpu": "KIND_GPU"}
    return kinds[name]
