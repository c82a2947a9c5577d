"""Experiment tracking through accelerate's trackers (TensorBoard, Weights & Biases, MLflow).

`teach` and `distill` log loss, learning rate and examples/s at each log step and the dev metrics
at each dev evaluation; `eval` logs its per-language accuracy table. xlt only names the tracker and
where it writes: accelerate owns the writers (`Accelerator(log_with=..., project_dir=...)`,
`init_trackers`, `log`, `end_training`), and only the main process logs.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from xlt.errors import UsageError

REPORT_TO = ("none", "tensorboard", "wandb", "mlflow")
#: The package each tracker needs, and what to install for it.
_PACKAGES = {"tensorboard": ("tensorboard", "pip install 'xlt[tracking]'  (tensorboard>=2.14)"),
             "wandb": ("wandb", "pip install wandb"), "mlflow": ("mlflow", "pip install mlflow")}
RUNS_DIR = "runs"


@dataclass(frozen=True)
class Tracking:
    """Where a run reports: `report_to` (tensorboard, wandb, mlflow) and `directory` (TensorBoard's
    log dir; None: the command's default, `OUT/runs/` for training)."""

    report_to: str
    directory: str | None = None

    @classmethod
    def from_options(cls, report_to: str, directory: str | None) -> "Tracking | None":
        """The tracking of `--report-to` / `--tracking-dir`, None for none; a tracker whose package
        is missing is refused (one line with the pip command)."""
        if report_to not in REPORT_TO:
            raise UsageError(f"--report-to must be one of {', '.join(REPORT_TO)} (got {report_to!r})")
        if report_to == "none":
            if directory is not None:
                raise UsageError("--tracking-dir only applies with --report-to")
            return None
        module, install = _PACKAGES[report_to]
        if importlib.util.find_spec(module) is None:
            raise UsageError(f"--report-to {report_to} needs the {module} package, which is not installed: {install}")
        return cls(report_to, directory)


def tracker_config(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """`values` flattened to what every tracker takes as hyperparameters: numbers, strings and
    booleans (None becomes "none", lists are joined)."""
    out: dict[str, Any] = {}
    for k, v in values.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(tracker_config(v, prefix=f"{key}/"))
        elif isinstance(v, (list, tuple)):
            out[key] = ",".join(str(x) for x in v)
        elif v is None:
            out[key] = "none"
        elif isinstance(v, (bool, int, float, str)):
            out[key] = v
        else:
            out[key] = str(v)
    return out


def dev_scalars(metrics: Mapping[str, Any], prefix: str = "dev") -> dict[str, float]:
    """The numeric metrics of a dev evaluation (and its per-language accuracies) as scalars."""
    out: dict[str, float] = {}
    for k, v in metrics.items():
        if k in ("step", "epoch", "n"):
            continue
        if isinstance(v, Mapping):
            out.update(dev_scalars(v, prefix=f"{prefix}/{k}"))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[f"{prefix}/{k}"] = float(v)
    return out


def report_scalars(report: Mapping[str, Any]) -> dict[str, float]:
    """An `xlt eval` report as scalars: accuracy and macro-F1 per language and the averages."""
    out: dict[str, float] = {}
    for lang, v in (report.get("languages") or {}).items():
        for metric in ("accuracy", "macro_f1"):
            if isinstance(v.get(metric), (int, float)):
                out[f"eval/{metric}/{lang}"] = float(v[metric])
    for key in ("average", "average_non_source"):
        v = report.get(key) or {}
        for metric in ("accuracy", "macro_f1"):
            if isinstance(v.get(metric), (int, float)):
                out[f"eval/{key}/{metric}"] = float(v[metric])
    overall = (report.get("overall") or {}).get("accuracy")
    if isinstance(overall, (int, float)):
        out["eval/overall/accuracy"] = float(overall)
    return out


def log_report(report: Mapping[str, Any], tracking: Tracking, *, model: str) -> None:
    """Log an eval report once (step 0) to `tracking` (TensorBoard: under `tracking.directory`,
    default `runs/`)."""
    from accelerate import Accelerator

    acc = Accelerator(cpu=True, log_with=tracking.report_to, project_dir=tracking.directory or RUNS_DIR)
    acc.init_trackers("eval", config=tracker_config({"model": model, "engine": report.get("signature", {}).get("engine")}))
    acc.log(report_scalars(report), step=0)
    acc.end_training()
