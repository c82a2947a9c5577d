"""Experiment tracking through accelerate's trackers (TensorBoard, Weights & Biases, MLflow).

`teach` and `distill` log loss, learning rate and examples/s at each log step and the dev metrics
at each dev evaluation; `eval` logs its per-language accuracy table. xlt only names the tracker and
where it writes: accelerate owns the writers (`Accelerator(log_with=..., project_dir=...)`,
`init_trackers`, `log`, `end_training`), and only the main process logs.

Where each tracker writes (DIR: `--tracking-dir`, else `OUT/runs/` for training, `./runs/` for eval):
TensorBoard its event files under DIR; Weights & Biases its run dir under DIR (`wandb.init(dir=)`;
online or offline as the user's wandb settings say, e.g. `WANDB_MODE=offline`); MLflow to the
server of `MLFLOW_TRACKING_URI` when it is set, else to the SQLite store `DIR/mlflow.db` (MLflow's
file store is deprecated; `mlflow ui --backend-store-uri sqlite:///DIR/mlflow.db` reads it).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from xlt.digest import RUNS_DIR
from xlt.errors import UsageError

REPORT_TO = ("none", "tensorboard", "wandb", "mlflow")
#: The packages each tracker needs, and what to install for them.
_PACKAGES = {"tensorboard": ("tensorboard",), "wandb": ("wandb",), "mlflow": ("mlflow",)}
#: MLflow's local store (without MLFLOW_TRACKING_URI) is SQLite, through SQLAlchemy and Alembic.
_MLFLOW_LOCAL = ("sqlalchemy", "alembic")
_INSTALL = "pip install 'xlt[tracking]'"
MLFLOW_DB = "mlflow.db"


@dataclass(frozen=True)
class Tracking:
    """Where a run reports: `report_to` (tensorboard, wandb, mlflow) and `directory` (where the
    tracker writes, see the module doc; None: the command's default, `OUT/runs/` for training)."""

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
        local = report_to == "mlflow" and not os.environ.get("MLFLOW_TRACKING_URI")
        missing = [m for m in _PACKAGES[report_to] + (_MLFLOW_LOCAL if local else ()) if importlib.util.find_spec(m) is None]
        if missing:
            what = " (its local store, without MLFLOW_TRACKING_URI)" if local else ""
            raise UsageError(f"--report-to {report_to}{what} needs {', '.join(missing)}, not installed: {_INSTALL} "
                             f"(or: pip install {' '.join(missing)})")
        return cls(report_to, directory)

    def where(self, directory: str) -> str:
        """Where this run's logs go, for the log line (`directory`: the resolved DIR)."""
        if self.report_to == "mlflow":
            return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{os.path.abspath(os.path.join(directory, MLFLOW_DB))}"
        return directory


def open_trackers(accelerator: Any, tracking: Tracking, name: str, config: Mapping[str, Any], directory: str) -> None:
    """Start `accelerator`'s tracker (made with `log_with=tracking.report_to, project_dir=directory`)
    as run `name` with the hyperparameters `config`, writing under `directory` (see the module doc)."""
    os.makedirs(directory, exist_ok=True)
    init_kwargs: dict[str, Any] = {}
    if tracking.report_to == "wandb":
        init_kwargs = {"wandb": {"dir": directory}}
    elif tracking.report_to == "mlflow":
        import mlflow

        mlflow.set_tracking_uri(tracking.where(directory))
    accelerator.init_trackers(name, config=tracker_config(config), init_kwargs=init_kwargs)


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
    """Log an eval report once (step 0) to `tracking` (under `tracking.directory`, default `runs/`)."""
    from accelerate import Accelerator

    directory = tracking.directory or RUNS_DIR
    acc = Accelerator(cpu=True, log_with=tracking.report_to, project_dir=directory)
    open_trackers(acc, tracking, "eval", {"model": model, "engine": report.get("signature", {}).get("engine")}, directory)
    acc.log(report_scalars(report), step=0)
    acc.end_training()
