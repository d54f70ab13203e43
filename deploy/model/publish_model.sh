#!/bin/sh
# Publishes an exported model repository onto the shared model volume, in two steps the Kubernetes Job
# `bga-mner-model-publish` runs in order (and that can be run by hand the same way):
#
#   publish_model.sh copy  SOURCE DEST   copy SOURCE/$MODEL_NAME/$PUBLISH_VERSION to DEST, atomically
#   publish_model.sh serve DEST          point DEST/$MODEL_NAME/config.pbtxt at $SERVE_VERSIONS
#
# SOURCE is what `bga-mner export --out DIR` wrote (deploy/docker/model-repository.Dockerfile ships it as
# an image, one tag per model version). Between the two steps the production Job builds the TensorRT plan
# (deploy/tensorrt/build_plan.sh) inside the copied version directory.
#
# copy:  the version directory is copied under a hidden temporary name and renamed into place, so Triton,
#        the workers and the plan build never see half a version. Re-running with the same version is a
#        no-op; a different version already published under that number is refused (exit 2) unless FORCE=1,
#        because workers may be serving it. The exported config.pbtxt is kept inside the version directory
#        as published-config.pbtxt; the live config is only written by `serve`.
# serve: writes config.pbtxt (the newest served version's published config) with
#        `version_policy: { specific: { versions: [...] } }` so Triton loads exactly SERVE_VERSIONS: during a
#        rollout both the version the workers are pinned to and the new one. It refuses (exit 2) while a
#        served version is incomplete (no model file, e.g. a TensorRT plan not built yet). Triton reads the
#        config when it (re)starts: roll it afterwards (docs/operations.md, "Model rollout").
#
# Env: MODEL_NAME (bga_mner), PUBLISH_VERSION (copy), SERVE_VERSIONS (serve, comma-separated), FORCE=1.
# POSIX sh on purpose: it runs in the busybox-based model image.
set -eu

die() { echo "publish_model: $*" >&2; exit 2; }
model=${MODEL_NAME:-bga_mner}

model_file() {  # the file Triton loads for the platform/backend named in a config.pbtxt
  if grep -q 'platform: *"tensorrt_plan"' "$1"; then echo model.plan
  elif grep -q 'platform: *"onnxruntime_onnx"' "$1"; then echo model.onnx
  elif grep -q 'backend: *"python"' "$1"; then echo model.py
  else die "$1 names no platform this script knows (tensorrt_plan, onnxruntime_onnx, python)"
  fi
}

copy() {
  source_root=$1 dest_root=$2
  version=${PUBLISH_VERSION:?PUBLISH_VERSION is required}
  case $version in *[!0-9]*|'') die "PUBLISH_VERSION must be a version number, got '$version'";; esac
  src="$source_root/$model/$version"
  [ -f "$src/manifest.json" ] || die "no $src/manifest.json: is this the repository of version $version?"
  [ -f "$source_root/$model/config.pbtxt" ] || die "no $source_root/$model/config.pbtxt"
  dest="$dest_root/$model/$version"
  mkdir -p "$dest_root/$model"
  if [ -d "$dest" ]; then
    if cmp -s "$src/manifest.json" "$dest/manifest.json"; then
      echo "publish_model: $model version $version is already published"
      return 0
    fi
    [ "${FORCE:-0}" = 1 ] || die "$dest holds a different model (manifest.json differs); FORCE=1 replaces it"
  fi
  staging="$dest_root/$model/.$version.partial.$$"
  rm -rf "$staging"
  cp -R "$src" "$staging"
  cp "$source_root/$model/config.pbtxt" "$staging/published-config.pbtxt"
  # Real-text warm-up inputs (Triton's input_data_file) live in <model>/warmup/, beside config.pbtxt:
  # kept with the version like its config, and put in place by `serve`.
  if [ -d "$source_root/$model/warmup" ]; then cp -R "$source_root/$model/warmup" "$staging/published-warmup"; fi
  if [ -d "$dest" ]; then
    mv "$dest" "$dest_root/$model/.$version.replaced.$$"
    mv "$staging" "$dest"
    rm -rf "$dest_root/$model/.$version.replaced.$$"
  else
    mv "$staging" "$dest"
  fi
  echo "publish_model: published $model version $version to $dest"
}

serve() {
  dest_root=$1
  versions=$(echo "${SERVE_VERSIONS:?SERVE_VERSIONS is required}" | tr ',' ' ')
  newest='' list=''
  for version in $versions; do
    case $version in *[!0-9]*) die "SERVE_VERSIONS must be comma-separated numbers, got '$SERVE_VERSIONS'";; esac
    dir="$dest_root/$model/$version"
    [ -f "$dir/published-config.pbtxt" ] || die "version $version is not published (no $dir/published-config.pbtxt)"
    file=$(model_file "$dir/published-config.pbtxt")
    [ -f "$dir/$file" ] || die "version $version has no $file yet (TensorRT: run the plan build first)"
    if [ -z "$newest" ] || [ "$version" -gt "$newest" ]; then newest=$version; fi
    list="${list:+$list, }$version"
  done
  [ -n "$newest" ] || die "SERVE_VERSIONS is empty"
  template="$dest_root/$model/$newest/published-config.pbtxt"
  [ "$(grep -c '^version_policy:' "$template")" = 1 ] || die "$template has no single version_policy line"
  tmp="$dest_root/$model/.config.pbtxt.$$"
  sed "s/^version_policy:.*/version_policy: { specific: { versions: [ $list ] } }/" "$template" > "$tmp"
  if [ -d "$dest_root/$model/$newest/published-warmup" ]; then
    rm -rf "$dest_root/$model/.warmup.$$"
    cp -R "$dest_root/$model/$newest/published-warmup" "$dest_root/$model/.warmup.$$"
    rm -rf "$dest_root/$model/warmup"
    mv "$dest_root/$model/.warmup.$$" "$dest_root/$model/warmup"
  fi
  mv "$tmp" "$dest_root/$model/config.pbtxt"
  echo "publish_model: $model serves versions [ $list ] once Triton reloads it"
}

case ${1:-} in
  copy) [ $# -eq 3 ] || die "usage: publish_model.sh copy SOURCE DEST"; copy "$2" "$3" ;;
  serve) [ $# -eq 2 ] || die "usage: publish_model.sh serve DEST"; serve "$2" ;;
  *) die "usage: publish_model.sh copy SOURCE DEST | serve DEST" ;;
esac
