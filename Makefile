# The README's two commands: `make demo` and `make test`. Both work from a clean clone:
# they create the venv, start what they need on free ports on 127.0.0.1 and stop it afterwards.
VENV ?= .venv
BIN := $(VENV)/bin
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: venv demo test test-unit test-reliability lint fmt clean capacity bench model

venv:
	@bash scripts/bootstrap.sh

demo: venv
	$(BIN)/bga-mner demo $(DEMO_ARGS)

# Integration tests start the real broker, Redis and Triton from session-scoped pytest fixtures
# and always stop them. pytest's exit code 5 (no test collected) is a failure here.
test: venv
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The fault-injection suite alone (it is part of `make test` too): kills, outages through proxies,
# a cut-off dead-letter producer, hostile input, memory. Prints its figures; docs/reliability.md.
test-reliability: venv
	BGA_RELIABILITY_FIGURES=$${BGA_RELIABILITY_FIGURES:-reliability-figures.json} \
	  $(BIN)/python -m pytest tests/reliability -p no:cacheprovider $(PYTEST_ARGS)

test-unit: venv
	$(BIN)/python -m pytest -m "not integration" $(PYTEST_ARGS)

# ruff, mypy --strict, and the layering contracts of pyproject.toml ([tool.importlinter]).
lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy bga_mner worker training model_repo tests benchmarks scripts
	$(BIN)/lint-imports

# The served model (docs/results.md, "The served model"): train the release recipe on the CPU (a
# finished run is reused, an interrupted one resumed), then export the ONNX Runtime model repository.
model: venv
	@test -f runs/release/results.json || $(BIN)/bga-mner train --config configs/joint-text_crf-release.yaml \
		--set runtime.num_threads=2 runtime.progress=false --out runs/release $(if $(wildcard runs/release/last.pt),--resume)
	$(BIN)/bga-mner export --checkpoint runs/release --target onnxruntime --out model_repository

# Redis memory per 100,000 posts, measured against a real redis-server (docs/capacity.md).
capacity: venv
	$(BIN)/python benchmarks/redis_capacity.py

# spaCy vs `bga-mner tag` vs Triton alone vs the worker end to end (docs/performance.md).
bench: venv
	$(BIN)/python benchmarks/pipeline.py --checkpoint $(or $(CHECKPOINT),runs/demo/checkpoint) $(BENCH_ARGS)

fmt: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .stack .pytest_cache .mypy_cache .ruff_cache
