#!/usr/bin/env bash
# Builds <repo>/<model>/<version>/model.plan from the model.onnx next to it, INSIDE the TensorRT
# container whose release matches the serving Triton (nvcr.io/nvidia/tensorrt:<yy.mm>-py3 for
# nvcr.io/nvidia/tritonserver:<yy.mm>-py3): a plan is tied to the TensorRT version and the GPU
# architecture that built it, so it is built where (and on the GPU type where) it will be served.
#
# Input: a repository written by `bga-mner export --target tensorrt --skip-plan` (config.pbtxt with
# platform "tensorrt_plan", manifest.json, tokenizer.json and model.onnx in the version directory).
# The optimisation profile covers batch 1..max_batch_size (from config.pbtxt) x sequence
# min_length..max_length (both from manifest.json), FP16, like training/export/tensorrt_build.py.
#
# After the build, plan_parity.py (next to this script) runs the plan on the fixed parity posts the
# export stored in plan_parity.npz and compares with the fp32 ONNX Runtime reference stored there:
# emissions within PARITY_ATOL and identical tags (entities) on PARITY_MIN_IDENTICAL of the posts.
# A plan that fails (or whose check cannot run) is removed and the script exits 1, so a plan that tags
# differently is never served. A repository exported before this check (no plan_parity.npz) is built
# with a warning instead.
#
# Usage: build_plan.sh REPOSITORY [MODEL_NAME=bga_mner] [VERSION=latest]
# Env:   OPT_BATCH (max/2), OPT_LENGTH (min(64, max)), WORKSPACE_MIB (4096),
#        TRTEXEC (trtexec on PATH, else /usr/src/tensorrt/bin/trtexec), FORCE=1 to rebuild,
#        PARITY_ATOL (0.25), PARITY_MIN_IDENTICAL (1.0), SKIP_PARITY=1 to skip the check (not advised).
set -euo pipefail

repository=${1:?usage: build_plan.sh REPOSITORY [MODEL_NAME] [VERSION]}
model_name=${2:-bga_mner}
version=${3:-}
model_dir="$repository/$model_name"
[ -f "$model_dir/config.pbtxt" ] || { echo "build_plan: no $model_dir/config.pbtxt" >&2; exit 2; }
if [ -z "$version" ]; then
  version=$(find "$model_dir" -mindepth 1 -maxdepth 1 -type d -regex '.*/[0-9]+' -printf '%f\n' | sort -n | tail -1)
fi
version_dir="$model_dir/$version"
onnx="$version_dir/model.onnx"
plan="$version_dir/model.plan"
[ -f "$onnx" ] || { echo "build_plan: no $onnx (export with --target tensorrt --skip-plan)" >&2; exit 2; }
grep -q 'platform: *"tensorrt_plan"' "$model_dir/config.pbtxt" \
  || { echo "build_plan: $model_dir/config.pbtxt is not a tensorrt_plan config" >&2; exit 2; }
if [ -f "$plan" ] && [ "${FORCE:-0}" != 1 ]; then
  echo "build_plan: $plan exists (FORCE=1 rebuilds)"; exit 0
fi

max_batch=$(sed -nE 's/^max_batch_size: *([0-9]+).*/\1/p' "$model_dir/config.pbtxt" | head -1)
max_length=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["max_length"])' \
  "$version_dir/manifest.json")
# The profile's shortest sequence is what the manifest states (the worker pads every request up to it).
min_length=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("min_length", 8))' \
  "$version_dir/manifest.json")
opt_batch=${OPT_BATCH:-$(( max_batch > 1 ? max_batch / 2 : 1 ))}
opt_length=${OPT_LENGTH:-$(( max_length < 64 ? max_length : 64 ))}
[ "$opt_length" -ge "$min_length" ] || opt_length=$min_length
trtexec=${TRTEXEC:-$(command -v trtexec || echo /usr/src/tensorrt/bin/trtexec)}

shape() { echo "input_ids:$1x$2,attention_mask:$1x$2,casing_ids:$1x$2"; }
# The sampler's scorers and rank selection stay fp32 in the FP16 plan (export lists their layers in
# fp32_layers.txt): fp16 rounding there can change which tokens the sampler keeps.
precision_args=()
if [ -s "$version_dir/fp32_layers.txt" ]; then
  layers=$(sed -e 's/$/:fp32/' "$version_dir/fp32_layers.txt" | paste -sd, -)
  precision_args=(--precisionConstraints=prefer "--layerPrecisions=$layers")
  echo "build_plan: $(wc -l < "$version_dir/fp32_layers.txt") sampler layers kept in fp32"
fi
echo "build_plan: $onnx -> $plan, batch 1..$max_batch (opt $opt_batch), sequence $min_length..$max_length (opt $opt_length), FP16"
# Build to a temporary name and rename: Triton never sees a half-written plan.
"$trtexec" --onnx="$onnx" --saveEngine="$plan.tmp" --fp16 \
  --minShapes="$(shape 1 "$min_length")" \
  --optShapes="$(shape "$opt_batch" "$opt_length")" \
  --maxShapes="$(shape "$max_batch" "$max_length")" \
  --memPoolSize=workspace:"${WORKSPACE_MIB:-4096}"M --skipInference ${precision_args[@]+"${precision_args[@]}"}
mv -f "$plan.tmp" "$plan"
echo "build_plan: wrote $plan ($(stat -c %s "$plan") bytes)"

if [ "${SKIP_PARITY:-0}" = 1 ]; then
  echo "build_plan: SKIP_PARITY=1: the plan was NOT compared with ONNX Runtime"; exit 0
fi
if [ ! -f "$version_dir/plan_parity.npz" ]; then
  # Exports made before the check existed carry no reference; every export since writes one.
  echo "build_plan: WARNING: no $version_dir/plan_parity.npz (an older export): the plan was NOT compared with ONNX Runtime" >&2
  exit 0
fi
script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
set +e
python3 "$script_dir/plan_parity.py" "$version_dir" \
  --atol "${PARITY_ATOL:-0.25}" --min-identical "${PARITY_MIN_IDENTICAL:-1.0}"
status=$?
set -e
if [ "$status" -ne 0 ]; then
  rm -f "$plan"
  echo "build_plan: parity check failed or could not run (status $status); removed $plan" >&2
  exit 1
fi
echo "build_plan: parity with ONNX Runtime holds"
