"""The saved-predictions engine: a frozen model, the predictions an earlier `xlt eval --predictions`
wrote for the same records.

Lets `eval` score or compare runs without running their models again (`--compare
base.pred.jsonl`). The file is read in step with the input; each record's texts must match.
A tagger's predictions (`pred.tags`, one `pred.probs` row per word, null for a word the model did
not see) make a frozen tagger: per-word outputs, `xlt.tagging.model.WordOutputs`. `pred.source_langs`
(the model's source languages, when eval knew them) gives the file the model's source languages,
`pred.training` (how the model was trained) its seed, steps and training time.
"""

from __future__ import annotations

from typing import Any

from xlt.errors import InputError, RecordError, UsageError
from xlt.inference.types import Inputs, Outputs
from xlt.records import TAGGING, Record, finite_numbers


#: The numbers of a training record that `xlt report` shows and sums (xlt.evaluate.report.training_info).
_TRAINING_NUMBERS = ("seed", "steps", "epochs", "examples_seen", "train_seconds")


def _training(where: str, value: Any) -> dict[str, Any] | None:
    """`pred.training` as read at `where`: an object whose seed, steps, epochs, examples and seconds
    are finite numbers or null (else exit 2 naming the field): a report never shows, sums or writes
    a wrong or non-finite number from a file."""
    import math

    if value is None:
        return None
    if not isinstance(value, dict):
        raise InputError(f'{where}: field "pred.training" must be an object (how the model was trained)')
    for key in _TRAINING_NUMBERS:
        v = value.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)):
            raise InputError(f'{where}: field "pred.training.{key}" must be a finite number or null')
    return value


class SavedPredictions:
    """Reads `pred.probs` of each record of the predictions file `path` (`xlt.inference.types.Engine`);
    its logits are the log-probabilities. A tagger's file (its first `pred` has `tags`) is a
    tagger: its manifest's fields are the tagging shape's, as a tagger checkpoint's are."""

    kind = "predictions"
    name = "predictions"
    tokenizer = None
    model = None
    device = None
    compute_type = None

    def __init__(self, path: str, *, option: str = "--model") -> None:
        from xlt.io import iter_located

        self.path = self.resolved = path
        self.option = option
        self.manifest: dict[str, Any] = {}
        self._records = iter_located([path])
        first = next(self._records, None)
        if first is None:
            raise UsageError(f"{option} {path}: an empty predictions file")
        self._pending: list[tuple[str, Record]] = [first]
        pred = first[1].get("pred")
        if not isinstance(pred, dict) or not isinstance(pred.get("labels"), list):
            raise UsageError(f"{option} {path}: not a model directory nor a predictions file from `xlt eval "
                             f"--predictions` (first record has no \"pred\" with \"labels\")")
        self.labels = list(pred["labels"])
        self.digest = str(pred.get("model") or f"predictions:{path}")
        self.tagging = isinstance(pred.get("tags"), list)
        if self.tagging:
            self.manifest = {"fields": list(TAGGING)}
        # the languages the model's labels came from, as eval wrote them: the non-source average
        # of an eval of this file is the model's own
        langs = pred.get("source_langs")
        if langs is not None:
            if not (isinstance(langs, list) and all(isinstance(x, str) for x in langs)):
                raise InputError(f'{first[0]}: field "pred.source_langs" must be a list of language codes')
            self.manifest["source_langs"] = list(langs)
        # how the model was trained, as eval wrote it: a report of this file keeps its seed and steps
        self.training: dict[str, Any] | None = _training(first[0], pred.get("training"))

    def note(self) -> str | None:
        return None

    def _next(self) -> tuple[str, Record]:
        if self._pending:
            return self._pending.pop()
        item = next(self._records, None)
        if item is None:
            raise UsageError(f"{self.option} {self.path}: fewer predictions than input records")
        return item

    def run(self, inputs: Inputs, *, batch_size: int, hidden: bool = False) -> Any:
        import numpy as np

        if hidden:
            raise UsageError(f"{self.option} {self.path}: a predictions file has no hidden states")
        if self.tagging:
            return self._run_words(inputs)
        logits = np.zeros((len(inputs.texts), len(self.labels)), dtype=np.float32)
        for i, text in enumerate(inputs.texts):
            where, rec = self._next()
            pred = rec.get("pred")
            values = set(v for v in rec.values() if isinstance(v, str))
            if not isinstance(pred, dict):
                raise InputError(f'{where}: missing field "pred" (a predictions file from xlt eval --predictions)')
            probs = self._log_probs(where, pred.get("probs"), "pred.probs")
            if not all(t in values for t in text):
                raise self._mismatch(where, i)
            logits[i] = probs
        return Outputs(logits)

    def _log_probs(self, where: str, value: Any, name: str) -> Any:
        """`value` as log-probabilities: one probability in [0, 1] per label, finite (else exit 2
        naming `where` and the field `name`)."""
        import numpy as np

        try:
            probs = finite_numbers(value, name, length=len(self.labels))
        except RecordError as exc:
            raise InputError(f"{where}: {exc}") from None
        if any(p < 0 or p > 1 for p in probs):
            raise InputError(f'{where}: field "{name}" must be probabilities in [0, 1]')
        return np.log(np.clip(np.asarray(probs, dtype=np.float64), 1e-12, None))

    def _mismatch(self, where: str, i: int) -> UsageError:
        return UsageError(f"{where}: this prediction is for another record than the input's {i + 1}th "
                          f"of its chunk: {self.option} needs predictions of the same records in the same order")

    def _run_words(self, inputs: Inputs) -> Any:
        """Per-word log-probabilities of a tagger's predictions (`WordOutputs`); a word whose
        `pred.probs` row is null was not seen by the model (not covered)."""
        import numpy as np

        from xlt.tagging.model import WordOutputs

        logits: list[Any] = []
        covered: list[Any] = []
        for i, text in enumerate(inputs.texts):
            where, rec = self._next()
            pred = rec.get("pred")
            if not isinstance(pred, dict):
                raise InputError(f'{where}: missing field "pred" (a predictions file from xlt eval --predictions)')
            if rec.get("tokens") != list(text[0]):
                raise self._mismatch(where, i)
            rows = pred.get("probs")
            if not isinstance(rows, list) or len(rows) != len(text[0]):
                raise InputError(f'{where}: field "pred.probs" must hold one row of probabilities per word '
                                 f"({len(text[0])}), or null for a word the model did not see")
            lg = np.zeros((len(rows), len(self.labels)), dtype=np.float32)
            seen = np.zeros(len(rows), dtype=bool)
            for j, row in enumerate(rows):
                if row is None:
                    continue
                lg[j] = self._log_probs(where, row, f"pred.probs[{j}]")
                seen[j] = True
            logits.append(lg)
            covered.append(seen)
        return WordOutputs(logits, covered)
