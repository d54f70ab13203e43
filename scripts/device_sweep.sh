#!/usr/bin/env bash
# Run scripts/sweep.py on a bare GPU machine, using runs/device_bundle (see scripts/build_device_bundle.py).
#   scripts/device_sweep.sh [extra sweep.py arguments, e.g. --seeds 1 2 3 --max-minutes 7]
# Checkpoints stay in /tmp/sweep; summary.{json,md} and a tarball of every run's metrics, results and
# config go to $OUT (or ./runs/sweep-out when OUT is unset).
set -euo pipefail
BUNDLE=runs/device_bundle
SITE=$BUNDLE/site
RESULTS=${OUT:-runs/sweep-out}
SWEEP_DIR=${SWEEP_DIR:-/tmp/sweep}
PY=$(command -v python3 || command -v python)
mkdir -p "$RESULTS"

if [ ! -e "$SITE/.ready" ]; then
"$PY" - "$BUNDLE" <<'PYEOF'
import importlib, sys, zipfile
from pathlib import Path

bundle = Path(sys.argv[1]); site = bundle / "site"
tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
print("python", sys.version.split()[0], "|", end=" ")
try:
    import pydantic  # noqa: F401
    print("pydantic present", end=" | ")
except ImportError:
    for wheel in sorted((bundle / "wheels").glob("*.whl")):
        if "pydantic_core" in wheel.name and tag not in wheel.name:
            continue
        zipfile.ZipFile(wheel).extractall(site)  # wheels are zips; pure and binary ones unpack as is
    print("pydantic unpacked", end=" | ")
try:
    importlib.import_module("sklearn.exceptions")
except ImportError:  # seqeval imports only this warning class from scikit-learn
    (site / "sklearn").mkdir(parents=True, exist_ok=True)
    (site / "sklearn" / "__init__.py").write_text("")
    (site / "sklearn" / "exceptions.py").write_text("class UndefinedMetricWarning(UserWarning):\n    pass\n")
    print("sklearn.exceptions shim", end=" | ")
minilm = bundle / "minilm"
if not (minilm / "model.safetensors").exists():
    from safetensors.torch import load_file, save_file
    weights = load_file(str(minilm / "model.fp16.safetensors"))
    save_file({k: (v.float() if v.is_floating_point() else v) for k, v in weights.items()},
              str(minilm / "model.safetensors"), metadata={"format": "pt"})
print("minilm fp32 ready")
PYEOF
touch "$SITE/.ready"
fi
[ -n "${PREP_ONLY:-}" ] && exit 0

export PYTHONPATH="$PWD/$SITE:$PWD" HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
"$PY" -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__, 'cuda', torch.cuda.is_available())"
set +e
"$PY" scripts/sweep.py --out "$SWEEP_DIR" \
  --set runtime.device=cuda runtime.progress=false data.data_dir="$PWD/$BUNDLE/data" \
        model.text_encoder="$PWD/$BUNDLE/minilm" model.image_encoder="$PWD/$BUNDLE/tiny-vit" \
  "$@"
status=$?
set -e
cp "$SWEEP_DIR"/summary.json "$SWEEP_DIR"/summary.md "$RESULTS"/ 2>/dev/null || true
(cd "$SWEEP_DIR" && tar czf - --exclude='*.pt' --exclude='*.png' --exclude='tokenizer.json' .) > "$RESULTS/runs.tar.gz" || true
exit $status
