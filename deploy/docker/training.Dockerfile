# Training and export: `bga-mner train`, `evaluate`, `export`. CPU torch by default (the pinned wheel);
# for GPU training build with --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu124.
# The TensorRT plan is NOT built here: a plan must be built by the TensorRT release that serves it
# (deploy/tensorrt/build_plan.sh in the matching container, or the k8s Job).
# Build from the repository root:  docker build -f deploy/docker/training.Dockerfile -t bga-mner-training .
FROM python:3.11-slim
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
RUN apt-get update && apt-get install -y --no-install-recommends git && rm -rf /var/lib/apt/lists/* \
    && useradd --uid 10001 --create-home --shell /usr/sbin/nologin trainer
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bga_mner ./bga_mner
COPY worker ./worker
COPY training ./training
COPY model_repo ./model_repo
# Editable on purpose: `export --target python` copies model_repo/python_backend/model.py from the source
# tree, which is not a Python package and so is not inside a built wheel.
RUN pip install --no-cache-dir --extra-index-url "$TORCH_INDEX" -e ".[training]" \
    && chown -R trainer /src
USER 10001
ENV PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 BGA_DATA_DIR=/data
ENTRYPOINT ["bga-mner"]
CMD ["--help"]
