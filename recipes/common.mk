# Shared settings of the recipes (included by recipes/<name>/Makefile after it sets its own
# per-scale defaults). Every variable is `?=`, so anything can be given on the command line:
#   make -C recipes/robust-xlt SCALE=small MODEL=me5-small EVAL="a.jsonl b.jsonl" OUT=/tmp/run
#
# SCALE=ci     samples/nli (30 records per language), 1 short epoch: the pipeline runs (minutes).
# SCALE=small  ../shared/data (English NLI + XNLI dev) on this 2-core CPU in under an hour.
# SCALE=paper  the papers' settings for a GPU cluster (see recipes/README.md and recipes/slurm.sh).

HERE    := $(abspath $(dir $(firstword $(MAKEFILE_LIST))))
ROOT    := $(abspath $(HERE)/../..)
SCALE   ?= ci
OUT     ?= $(HERE)/out-$(SCALE)
XLT     ?= $(ROOT)/.venv/bin/xlt
# The training steps (teach, distill) only: e.g. TRAIN_XLT="torchrun --nproc-per-node 4 -m xlt" for
# multi-GPU DDP on a cluster node (only rank 0 writes); everything else stays one process.
TRAIN_XLT ?= $(XLT)
DATA    ?= $(abspath $(ROOT)/../shared/data)
SAMPLES ?= $(ROOT)/samples/nli
# SCALE=paper data the project cannot ship: MNLI train and XNLI test as xlt JSONL (see README).
PAPER_DATA ?= $(ROOT)/data
SEED    ?= 13
# Seed of the recipes' own splits: not SEED, which `take` uses, since two splits by the same key
# and seed are not independent (a 20/80 split of a 41 % sample would be 49/51).
SPLIT_SEED ?= $(shell expr $(SEED) + 1)
# Q=--quiet silences progress and info lines (warnings and errors stay).
Q       ?=

export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

ifeq ($(SCALE),ci)
  MODEL      ?= me5-small
  LANGS      ?= en fr de ru
  TRAIN      ?= $(SAMPLES)/en.jsonl
  EVAL       ?= $(foreach l,$(LANGS),$(SAMPLES)/$(l).jsonl)
  # premise groups of samples/nli (ids s-3k..s-3k+2 share a premise)
  META       ?= $(ROOT)/recipes/samples.meta.jsonl
  TRAIN_KEEP ?= 1
  EVAL_KEEP  ?= 1
  EPOCHS     ?= 1
  BATCH      ?= 8
  LR         ?= 1e-4
  MAXLEN     ?= 64
  FREEZE     ?= --freeze-embeddings
  BOOTSTRAP  ?= 200
else ifeq ($(SCALE),small)
  MODEL      ?= me5-small
  LANGS      ?= en fr es de el bg ru tr ar vi th zh hi sw ur
  TRAIN      ?= $(DATA)/nli-en/mnli.dev_matched.en.jsonl
  EVAL       ?= $(foreach l,$(LANGS),$(DATA)/xnli/dev.$(l).jsonl)
  META       ?= $(DATA)/xnli/dev.meta.jsonl
  TRAIN_KEEP ?= 0.41
  EVAL_KEEP  ?= 0.2
  EPOCHS     ?= 1
  BATCH      ?= 16
  LR         ?= 1e-4
  MAXLEN     ?= 128
  FREEZE     ?= --freeze-embeddings
  BOOTSTRAP  ?= 1000
else ifeq ($(SCALE),paper)
  MODEL      ?= bert-base-multilingual-cased
  LANGS      ?= en fr es de el bg ru tr ar vi th zh hi sw ur
  TRAIN      ?= $(PAPER_DATA)/mnli/train.en.jsonl
  EVAL       ?= $(foreach l,$(LANGS),$(PAPER_DATA)/xnli/test.$(l).jsonl)
  META       ?= $(PAPER_DATA)/xnli/test.meta.jsonl
  TRAIN_KEEP ?= 1
  EVAL_KEEP  ?= 1
  EPOCHS     ?= 3
  BATCH      ?= 32
  LR         ?= 2e-5
  MAXLEN     ?= 128
  FREEZE     ?=
  BOOTSTRAP  ?= 1000
else
  $(error SCALE must be ci, small or paper, not '$(SCALE)')
endif

# One label order for every model, so teachers and students agree even on a sample missing a class.
LABELS      ?= contradiction,entailment,neutral
# $(call train_opts,E): the options of a training step with E epochs; TRAIN_OPTS has EPOCHS.
train_opts   = --labels $(LABELS) $(FREEZE) --epochs $(1) --batch-size $(BATCH) --lr $(LR) --max-length $(MAXLEN) --seed $(SEED) $(Q)
TRAIN_OPTS   = $(call train_opts,$(EPOCHS))
EVAL_OPTS    = --seed $(SEED) $(Q)

# The file of language $(2) in the list $(1): .../L.jsonl or .../*.L.jsonl (samples/nli/fr.jsonl,
# xnli/dev.fr.jsonl).
lang_file = $(firstword $(filter %/$(2).jsonl %.$(2).jsonl %/$(2).jsonl.gz %.$(2).jsonl.gz,$(1)))

# $(call take,FILES,FRACTION,OUT[,MORE SPLIT OPTIONS[,SEED]]): a deterministic share of the records
# of FILES (by a hash of the id, so parallel files keep the same ids), the rest dropped. A take of
# what a take (or split) with the same seed wrote must pass another SEED: with the same one the
# hashes are not independent and the share is not FRACTION (20 % of a 41 % take would be 49 %).
take = $(XLT) split $(1) $(4) --seed $(or $(5),$(SEED)) --into $(3):$(2) \
    $(if $(filter 1 1.0,$(2)),,--into /dev/null:$(shell awk 'BEGIN { print 1 - $(2) }')) --force $(Q)

# $(call stamp,NAME,COMMAND): the file $(OUT)/.NAME.cmd, holding COMMAND, rewritten (so newer) only
# when COMMAND differs from what it holds. A results table lists its command's stamp among its
# prerequisites: a row removed from SYSTEMS, or a report option changed, rebuilds the table, where
# the eval reports alone would look up to date and leave the old table in place.
differ = $(subst $(1),,$(2))$(subst $(2),,$(1))
stamp = $(OUT)/.$(1).cmd$(if $(call differ,$(file <$(OUT)/.$(1).cmd),$(strip $(2))),$(shell mkdir -p $(OUT))$(file >$(OUT)/.$(1).cmd,$(strip $(2))))

# A training step interrupted earlier (time limit, preemption) left <checkpoint>.partial: continue it.
resume = $(if $(wildcard $(1).partial),--resume)

# An absent MT model: the step is skipped with a notice (no offline MT model exists here).
define mt_notice
	@echo "$(notdir $(HERE)): MT is empty: skipping $(1) (give MT=<CTranslate2 or Hugging Face seq2seq model>)" >&2
endef

.DELETE_ON_ERROR:

# Checkpoints and data made by pattern rules are results, not intermediate files to delete.
# (Not `.SECONDARY:` with no names: that makes every target secondary, and make then skips a
# missing one whenever what depends on it looks newer, e.g. a new SYSTEMS row whose results.json
# already exists. Outputs are written atomically, so keeping them on an interrupt loses nothing.)
.PRECIOUS: $(OUT)/%

# --- Data every recipe takes the same way (a recipe uses those it needs) ------------------------
.DEFAULT_GOAL := all

# A TRAIN_KEEP share of the training data, and an EVAL_KEEP share of the evaluation files.
$(OUT)/train.jsonl: $(TRAIN)
	@mkdir -p $(OUT)
	$(call take,$(TRAIN),$(TRAIN_KEEP),$@)

$(OUT)/eval.jsonl: $(EVAL)
	@mkdir -p $(OUT)
	$(call take,$(EVAL),$(EVAL_KEEP),$@)

# The evaluation files split by premise group: a pool (training text) and a test half, no premise
# in both and every language split the same way; POOL_KEEP / TEST_KEEP shares of each.
$(OUT)/pool-all.jsonl $(OUT)/test-all.jsonl &: $(EVAL) $(META)
	@mkdir -p $(OUT)
	$(XLT) split $(EVAL) --meta $(META) --by premise_group --seed $(SPLIT_SEED) \
	    --into $(OUT)/pool-all.jsonl:0.5 --into $(OUT)/test-all.jsonl:0.5 --force $(Q)

$(OUT)/pool.jsonl: $(OUT)/pool-all.jsonl
	$(call take,$<,$(POOL_KEEP),$@)

$(OUT)/test.jsonl: $(OUT)/test-all.jsonl
	$(call take,$<,$(TEST_KEEP),$@)
