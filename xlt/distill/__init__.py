"""Distillation objectives, small from-scratch students and their BPE vocabularies (`xlt distill`).

Importing this package is cheap (no torch): the names, the weight-spec parser and the pseudo-label
report live in torch-free modules. Training code imports the pieces it needs from the submodules:

- `xlt.distill.spec`: objective term names, their required inputs, `parse_weights("kd=1,ce=0.5")`
- `xlt.distill.losses`: one loss per module (`kd`, `mse`, `hidden_kl`, `ce`, `pseudo`) and
  `CombinedObjective` with its input contract `DistillBatch`
- `xlt.distill.report`: `PseudoLabelReport`, streaming kept/seen counts per language and class
- `xlt.distill.students`: `XltSmallConfig` / `XltSmallForSequenceClassification` (transformer,
  bilstm, cnn) and `XltSmallForTokenClassification` (the same as taggers), registered with the
  transformers Auto classes on import
- `xlt.distill.bpe`: `train_bpe_tokenizer`, a byte-level BPE vocabulary learned from text
- `xlt.distill.run`: `distill`: resolve the teacher signals, build the student, then the run every
  training command shares (`xlt.train.run`)
"""

from __future__ import annotations

from xlt.distill.spec import OBJECTIVES, STUDENT_ARCHS, parse_weights

__all__ = ["OBJECTIVES", "STUDENT_ARCHS", "parse_weights"]
