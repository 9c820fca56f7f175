# audiossl: the two commands a fresh machine needs are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed
PY := $(VENV)/bin/python
export TORCH_COMPILE_DISABLE ?= 1

.PHONY: demo test bench mini-superb few-label self-train sysdeps clean-venv

# fairseq2n loads libsndfile.so.1 at import time; install it when we are root, else say what to install.
sysdeps:
	@if ! ldconfig -p 2>/dev/null | grep -q 'libsndfile\.so\.1 '; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing system library libsndfile1 (needed by fairseq2)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libsndfile1 >/dev/null; \
	  else \
	    echo "error: audiossl needs the system library libsndfile1 (libsndfile.so.1)." >&2; \
	    echo "       install it, e.g. 'sudo apt-get install libsndfile1', then run make again." >&2; \
	    exit 1; \
	  fi; \
	fi

# The venv is rebuilt when missing or older than the package list / pinned versions.
$(STAMP): pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (audiossl needs Python 3.11)" >&2; exit 1; }
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[test]'
	@touch $(STAMP)

test: sysdeps $(STAMP)
	$(PY) -m pytest -q

demo: sysdeps $(STAMP)
	@bash scripts/demo.sh

# Pretrain every CPU recipe, then score them all with audiossl-bench (about 3 hours on 2 cores).
mini-superb: sysdeps $(STAMP)
	@bash scripts/mini_superb.sh

# The README's few-label ASR table: pretrained vs supervised fbank vs random init, 10 min and 1 h, 3 seeds each.
few-label: sysdeps $(STAMP)
	@bash scripts/few_label.sh

# One round of self-training on the 10-minute runs of few-label (SYSTEM=pretrained|denoise|fbank, 3 seeds).
self-train: sysdeps $(STAMP)
	@bash scripts/self_train.sh

bench: sysdeps $(STAMP)
	$(PY) benchmarks/bench_pipeline.py
	$(PY) benchmarks/bench_pretrain.py

clean-venv:
	rm -rf $(VENV)
