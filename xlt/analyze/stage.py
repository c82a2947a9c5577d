"""The `analyze` stage as plain functions, callable without the CLI: `AnalyzeConfig` (the options,
checked in one place), `load_models`, `analyze` (located records -> the report and the vectors)
and `draw_plots`. Writing the outputs is the caller's (`xlt.cli.analyze` stages them)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from xlt import __version__, log
from xlt.analyze.collect import AnalyzeInputCheck, Collected, collect
from xlt.analyze.report import build_report, sample_points
from xlt.errors import InputError, UsageError
from xlt.io import SkipReport
from xlt.records import Record, parse_fields

PROJECTIONS = ("tsne", "pca")


def parse_layer(spec: str | int) -> str | int:
    """`--layer`: `last`, `all`, or a hidden-state index (0 = embeddings; negative counts from the end)."""
    spec = str(spec).strip().lower()
    if spec in ("last", "all"):
        return spec
    try:
        return int(spec)
    except ValueError:
        raise UsageError(f"--layer takes last, all or a layer number, not {spec!r}") from None


def plot_paths(prefix: str, *, layers: bool) -> dict[str, str]:
    """The PNG files of `--plot PREFIX`: PREFIX.map.png, PREFIX.alignment.png (and
    PREFIX.layers.png with --layer all); a PREFIX that is a directory holds map.png, ..."""
    names = ["map", "alignment"] + (["layers"] if layers else [])
    if prefix.endswith(("/", os.sep)) or os.path.isdir(prefix):
        return {n: os.path.join(prefix, f"{n}.png") for n in names}
    return {n: f"{prefix}.{n}.png" for n in names}


@dataclass
class AnalyzeConfig:
    """The options of `analyze`, checked when made: `layer` becomes `last`, `all` or an int,
    `fields` (a --fields spec) the field names or None."""

    model: str
    teacher: str | None = None
    src: str = "en"
    layer: str | int = "last"
    plot: str | None = None
    projection: str = "tsne"
    max_points: int = 2000
    fields: str | tuple[str, ...] | None = None
    batch_size: int = 64
    max_length: int | None = None
    seed: int = 0
    device: str = "auto"
    engine: str = "auto"
    compute_type: str | None = None
    threads: int = 0

    def __post_init__(self) -> None:
        self.layer = parse_layer(self.layer)
        if self.projection not in PROJECTIONS:
            raise UsageError(f"--projection must be one of {', '.join(PROJECTIONS)}, not {self.projection!r}")
        if self.max_points < 2:
            raise UsageError(f"--max-points must be at least 2, not {self.max_points}")
        if self.fields is None or isinstance(self.fields, str):
            self.fields = parse_fields(self.fields)

    @property
    def plot_files(self) -> dict[str, str]:
        """The PNG files to write by name (map, alignment, layers); none without `plot`."""
        return plot_paths(self.plot, layers=self.layer == "all") if self.plot else {}


@dataclass(frozen=True)
class Layers:
    """The hidden states read: `read` (None: the final one, from any engine) are the K columns of
    the vectors, `names` their names in the report, `main` the column reported and `last` the
    final layer's (teacher-student distances)."""

    read: list[int] | None
    names: list[int | str]
    main: int
    last: int


def resolve_layers(config: AnalyzeConfig, student: Any) -> Layers:
    """The layers `config.layer` asks for, in the student's numbering (torch for any but `last`)."""
    from xlt.analyze.represent import num_layers

    chosen = config.layer
    if chosen == "last":
        return Layers(read=None, names=["last"], main=0, last=0)
    n_layers = num_layers(student)
    if chosen == "all":
        read = list(range(n_layers + 1))
    else:
        assert isinstance(chosen, int)
        k = chosen + n_layers + 1 if chosen < 0 else chosen
        if not 0 <= k <= n_layers:
            raise UsageError(f"--layer {chosen}: {config.model} has layers 0 (embeddings) to {n_layers}")
        # the teacher is compared at the final layer, so it is read too
        read = [k] if config.teacher is None or k == n_layers else [k, n_layers]
    main = read.index(n_layers if chosen == "all" else read[0])
    last = read.index(n_layers) if n_layers in read else 0  # used only with a teacher, which adds it
    return Layers(read=read, names=list(read), main=main, last=last)


@dataclass
class Models:
    """The loaded models and what follows from them: the layers read and the input check (give it
    to the reader as `validate`)."""

    student: Any
    teacher: Any
    layers: Layers
    check: AnalyzeInputCheck
    classifier: bool
    teacher_classifier: bool


def load_models(config: AnalyzeConfig) -> Models:
    """Load the model (and teacher) of `config`, float32 outputs, torch when other layers are read."""
    from xlt.analyze.represent import is_classifier, load

    run = {"device": config.device, "batch_size": config.batch_size, "max_length": config.max_length,
           "engine": config.engine, "compute_type": config.compute_type, "threads": config.threads}
    student = load(config.model, option="--model", torch_needed=config.layer != "last", **run)
    teacher = load(config.teacher, option="--teacher", torch_needed=False, **run) if config.teacher else None
    layers = resolve_layers(config, student)
    classifier = is_classifier(student)
    assert not isinstance(config.fields, str)
    check = AnalyzeInputCheck(config.fields or student.fields, student.labels if classifier else None)
    return Models(student=student, teacher=teacher, layers=layers, check=check, classifier=classifier,
                  teacher_classifier=teacher is not None and is_classifier(teacher))


def analyze(located: Iterable[tuple[str, Record]], models: Models, config: AnalyzeConfig, *,
            inputs: Sequence[str] | None = None, skipped: SkipReport | None = None) -> tuple[dict[str, Any], Collected]:
    """The report of `located` records (validated by `models.check`) and the vectors it was made
    from. `inputs` names the input files in messages (none: stdin); `skipped`, the reader's
    report of bad records, is recorded in the report."""
    from xlt.train.data import DigestingSource

    digests = DigestingSource()
    col = collect(_digested(located, digests), models.student, teacher=models.teacher, layers=models.layers.read,
                  src_lang=config.src, check=models.check)
    _check_parallel(col, inputs, src=config.src, skipped=skipped)
    layers = models.layers
    report = build_report(col, student=models.student, teacher=models.teacher, layers=layers.names,
                          main=layers.main, last=layers.last, by_layer=config.layer == "all",
                          classifier=models.classifier, teacher_classifier=models.teacher_classifier,
                          signature=signature(config, models, digests.digests()))
    if skipped is not None and skipped.count:
        report["skipped"] = {"count": skipped.count, "examples": skipped.examples}
    return report, col


def _digested(located: Iterable[tuple[str, Record]], digests: Any) -> Iterator[tuple[str, Record]]:
    for where, rec in log.track(located, description="analyze", unit="records"):
        digests.update(where, rec)
        yield where, rec


def _check_parallel(col: Collected, inputs: Sequence[str] | None, *, src: str, skipped: SkipReport | None) -> None:
    names = ", ".join(inputs or ["<stdin>"])
    if not col.count:
        raise InputError(f"{names}: no records" + (" left after skipping bad ones" if skipped and skipped.count else ""))
    if not (col.source_of >= 0).any():
        raise InputError(f"{names}: no parallel records: give records with a `src` view "
                         f"(xlt pair --src {src}) or parallel files that share ids with {src} records (--src)")


def signature(config: AnalyzeConfig, models: Models, data: dict[str, str]) -> dict[str, Any]:
    """The settings and versions that made the numbers (`data`: digests of the inputs)."""
    student, teacher = models.student, models.teacher
    sig = {"xlt": __version__, "model": config.model, "model_digest": student.digest, "engine": student.engine_name,
           "data": data, "fields": list(models.check.fields or ()), "layer": config.layer,
           "pooling": "first token", "src": config.src, "seed": config.seed}
    if teacher is not None:
        sig.update({"teacher": config.teacher, "teacher_digest": teacher.digest, "teacher_engine": teacher.engine_name})
    return sig


def draw_plots(report: dict[str, Any], col: Collected, paths: Mapping[str, str], config: AnalyzeConfig, *,
               layers: Layers) -> None:
    """Draw the pictures of `config.plot_files` into `paths` (the same names: map, alignment and
    maybe layers; staged temporaries or the files themselves) and record them in report["plots"]."""
    from xlt.analyze import plots

    shown = sample_points(col.count, max_points=config.max_points, seed=config.seed)
    title = f"{config.model} (layer {layers.names[layers.main]})"
    used = plots.plot_map(col.vectors[shown, layers.main], [col.langs[i] for i in shown],
                          [col.labels[i] for i in shown], paths["map"], projection=config.projection,
                          seed=config.seed, title=title, threads=config.threads)
    report["plots"] = {"files": list(config.plot_files.values()), "points": int(shown.size),
                       "max_points": config.max_points, "projection": used, "seed": config.seed}
    plots.plot_alignment(report, paths["alignment"], title=title)
    if "layers" in paths:
        plots.plot_layers(report, paths["layers"], title=str(config.model))
