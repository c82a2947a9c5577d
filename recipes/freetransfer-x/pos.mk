# freetransfer-x, TASK=pos: FreeTransfer-X's sequence-tagging transfer (Table 3) on UD part of
# speech, with word-level knowledge distillation (every model read at the first subword of each
# word, so a small student with its own vocabulary learns from the multilingual tagger).
#   tagger        step 1: MODEL (me5-small) fine-tuned as a UPOS tagger on English     xlt teach
#                 (UD English-EWT dev + test, 4,078 sentences), scored zero-shot on the test half
#                 of PUD in every target language                                      xlt eval
#   step2-ARCH    step 2, per target language: the tagger soft-labels that language's unlabelled
#                 PUD half word by word; a small student (transformer, bilstm, cnn; trained from
#                 scratch, BPE vocabulary of that text) learns from it (word-level KD)
#                                                          xlt soft-label --view self | xlt distill --student-arch ARCH
#   direct-ARCH   baseline: the same small student trained on the English data directly (gold tags,
#                 no teacher), scored on every target language                  xlt distill --objective ce
# Each PUD language file is split by sentence id (the same sentences in every language): one half
# is unlabelled text (its tags are never read), the other the test.
#
#   make -C recipes/freetransfer-x TASK=pos SCALE=ci|small|paper [STEP2_LANGS="de ru"] [ARCHS=cnn] [OUT=]
#
# SCALE=ci: samples/pos (self-made, 24 English sentences, fr and de translations); SCALE=small:
# ../shared/data/udpos, 19 PUD languages, on this 2-core CPU in under an hour; SCALE=paper: slot
# filling as in the paper (MTOP, XLM-R base; the data is not shipped: give it as xlt JSONL, e.g.
# from `xlt import`): TRAIN=$(PAPER_DATA)/mtop/train.en.jsonl, EVAL=$(PAPER_DATA)/mtop/test.L.jsonl,
# LABELS= the BIO slot tags (eval then reports entity-level span F1 as well), STEP2_LANGS=de es fr hi th.

POS_ROOT := $(abspath $(RECIPE_DIR)/../..)
POS_DATA  = $(abspath $(POS_ROOT)/../shared/data/udpos)

ifeq ($(SCALE),ci)
  TAG_LANGS    ?= fr de
  TRAIN        ?= $(POS_ROOT)/samples/pos/en.jsonl
  EVAL         ?= $(foreach l,$(TAG_LANGS),$(POS_ROOT)/samples/pos/$(l).jsonl)
  TAG_EPOCHS   ?= 1
  STEP2_EPOCHS ?= 2
  VOCAB        ?= 300
  BATCH        ?= 8
else ifeq ($(SCALE),small)
  TAG_LANGS    ?= fr de es it pt ru zh ja ko ar hi tr th id fi pl sv cs is
  TRAIN        ?= $(POS_DATA)/ewt.dev.en.jsonl $(POS_DATA)/ewt.test.en.jsonl
  EVAL         ?= $(foreach l,$(TAG_LANGS),$(POS_DATA)/pud.dev.$(l).jsonl)
  # English PUD (parallel to the targets): its pool half selects the tagger, its test half is scored
  EN_EVAL      ?= $(POS_DATA)/pud.dev.en.jsonl
  TAG_EPOCHS   ?= 2
  STEP2_EPOCHS ?= 10
  DIRECT_EPOCHS ?= 3
  # students for 8 of the 19 languages, one per script family (STEP2_LANGS="$(TAG_LANGS)": all 19,
  # about 25 more minutes)
  STEP2_LANGS  ?= de fr ru zh ja ar hi th
  VOCAB        ?= 2000
  MAXLEN       ?= 256
  BATCH        ?= 16
else ifeq ($(SCALE),paper)
  MODEL        ?= xlm-roberta-base
  TAG_LANGS    ?= de es fr hi th
  TRAIN        ?= $(PAPER_DATA)/mtop/train.en.jsonl
  EVAL         ?= $(foreach l,$(TAG_LANGS),$(PAPER_DATA)/mtop/test.$(l).jsonl)
  TAG_EPOCHS   ?= 3
  STEP2_EPOCHS ?= 10
  VOCAB        ?= 10000
endif

# The 17 UPOS tags of UD v2, one order for every model.
LABELS      ?= ADJ,ADP,ADV,AUX,CCONJ,DET,INTJ,NOUN,NUM,PART,PRON,PROPN,PUNCT,SCONJ,SYM,VERB,X
LANGS       ?= $(TAG_LANGS)
TRAIN_KEEP  ?= 1
STEP2_LANGS ?= $(TAG_LANGS)

include $(RECIPE_DIR)/../common.mk

ARCHS       ?= transformer bilstm cnn
# epochs of the direct baseline (the whole English training set, not one language's pool)
DIRECT_EPOCHS ?= $(STEP2_EPOCHS)
KD_T        ?= 1
STEP2_LR    ?= 1e-3
student_opts = --labels $(LABELS) --epochs $(1) --batch-size $(BATCH) --lr $(STEP2_LR) \
               --max-length $(MAXLEN) --seed $(SEED) --vocab-size $(VOCAB) $(Q)
STEP2_OPTS   = $(call student_opts,$(STEP2_EPOCHS))
TEST_FILES   = $(foreach l,$(TAG_LANGS),$(OUT)/test.$(l).jsonl) $(if $(EN_EVAL),$(OUT)/test.en.jsonl)
DEV_FILE     = $(if $(EN_EVAL),$(OUT)/pool.en.jsonl)

.PHONY: all clean
all: $(OUT)/results.json $(OUT)/results.md

# One language's file -> its unlabelled half (pool) and its test half, by sentence id.
$(OUT)/pool.%.jsonl $(OUT)/test.%.jsonl &: $(EVAL) $(EN_EVAL)
	@mkdir -p $(OUT)
	$(XLT) split $(call lang_file,$(EVAL) $(EN_EVAL),$*) --seed $(SPLIT_SEED) \
	    --into $(OUT)/pool.$*.jsonl:0.5 --into $(OUT)/test.$*.jsonl:0.5 --force $(Q)

$(OUT)/tagger.ckpt/xlt.json: $(OUT)/train.jsonl $(DEV_FILE)
	$(TRAIN_XLT) teach $< --model $(MODEL) $(call train_opts,$(TAG_EPOCHS)) $(if $(DEV_FILE),--dev $(DEV_FILE)) \
	    --out $(OUT)/tagger.ckpt $(call resume,$(OUT)/tagger.ckpt) --force

$(OUT)/tagger.eval.json: $(TEST_FILES) $(OUT)/tagger.ckpt/xlt.json
	$(XLT) eval --model $(OUT)/tagger.ckpt $(TEST_FILES) $(EVAL_OPTS) -o $@ --force

# --- step 2: the tagger -> small students, one per target language ------------------------------
$(OUT)/soft.%.jsonl: $(OUT)/pool.%.jsonl $(OUT)/tagger.ckpt/xlt.json
	$(XLT) soft-label --teacher $(OUT)/tagger.ckpt --view self $< -o $@ --force $(Q)

define pos_students
$(OUT)/step2.$(1).$(2).ckpt/xlt.json: $(OUT)/soft.$(2).jsonl
	$$(TRAIN_XLT) distill $$< --student-arch $(1) --objective kd --temperature $$(KD_T) $$(STEP2_OPTS) \
	    --out $(OUT)/step2.$(1).$(2).ckpt $$(call resume,$(OUT)/step2.$(1).$(2).ckpt) --force

$(OUT)/step2.$(1).$(2).eval.json: $(OUT)/test.$(2).jsonl $(OUT)/step2.$(1).$(2).ckpt/xlt.json
	$$(XLT) eval --model $(OUT)/step2.$(1).$(2).ckpt $$< $$(EVAL_OPTS) -o $$@ --force
endef
$(foreach a,$(ARCHS),$(foreach l,$(STEP2_LANGS),$(eval $(call pos_students,$(a),$(l)))))

# --- baseline: each small student on the English data directly -----------------------------------
$(OUT)/direct.%.ckpt/xlt.json: $(OUT)/train.jsonl
	$(TRAIN_XLT) distill $< --student-arch $* --objective ce $(call student_opts,$(DIRECT_EPOCHS)) --out $(OUT)/direct.$*.ckpt \
	    $(call resume,$(OUT)/direct.$*.ckpt) --force

$(OUT)/direct.%.eval.json: $(TEST_FILES) $(OUT)/direct.%.ckpt/xlt.json
	$(XLT) eval --model $(OUT)/direct.$*.ckpt $(TEST_FILES) $(EVAL_OPTS) -o $@ --force

comma := ,
empty :=
space := $(empty) $(empty)
row = $(1)=$(subst $(space),$(comma),$(foreach l,$(STEP2_LANGS),$(OUT)/$(2).$(l).eval.json))
REPORT_ROWS = tagger=$(OUT)/tagger.eval.json \
    $(foreach a,$(ARCHS),$(call row,step2-$(a),step2.$(a)) direct-$(a)=$(OUT)/direct.$(a).eval.json)
REPORT_DEPS = $(OUT)/tagger.eval.json \
    $(foreach a,$(ARCHS),$(OUT)/direct.$(a).eval.json $(foreach l,$(STEP2_LANGS),$(OUT)/step2.$(a).$(l).eval.json))

$(OUT)/results.json $(OUT)/results.md &: $(REPORT_DEPS)
	$(XLT) report $(REPORT_ROWS) --baseline tagger --source en --langs $(subst $(space),$(comma),$(strip $(STEP2_LANGS))) \
	    --title "freetransfer-x TASK=pos ($(SCALE)): UPOS token accuracy, word-level KD from a $(MODEL) tagger" \
	    -o $(OUT)/results.json --markdown $(OUT)/results.md --force $(Q)

clean:
	rm -rf $(OUT)
