# The streaming worker: Kafka -> Triton -> Redis. Torch-free on purpose (`bga-mner[worker]` only):
# the image stays ~300 MB and starts in seconds, and a test proves the worker never imports torch.
# Build from the repository root:  docker build -f deploy/docker/worker.Dockerfile -t bga-mner-worker .
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bga_mner ./bga_mner
COPY worker ./worker
COPY training ./training
COPY model_repo ./model_repo
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".[worker]"

FROM python:3.11-slim
RUN useradd --uid 10001 --create-home --shell /usr/sbin/nologin worker
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels "bga-mner[worker]" && rm -rf /wheels \
    && python -c "import bga_mner, worker; import sys; assert 'torch' not in sys.modules"
USER 10001
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
# 9108: Prometheus /metrics, /healthz, /readyz
EXPOSE 9108
ENTRYPOINT ["bga-mner", "worker"]
