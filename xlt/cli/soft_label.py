"""`xlt soft-label`: attach a teacher's outputs to records (1:1, streaming)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from xlt.cli import common


def soft_label_cli(
    files: common.Files = None,
    teacher: Annotated[list[str], typer.Option("--teacher", help="Teacher checkpoint (from xlt teach) or any sequence-classification model; a tagger (token classifier) for tagging records. Give it more than once for an ensemble: the mean of the teachers' logits (e.g. seeds of one model).")] = ...,
    view: Annotated[str, typer.Option("--view", help="Which text the teacher reads: auto (the `src` view when present, else the record), src, self.")] = "auto",
    temperature: Annotated[float, typer.Option("--temperature", parser=common.finite, help="Softmax temperature of the stored probabilities (logits are stored too).")] = 1.0,
    hidden: Annotated[bool, typer.Option("--hidden", help="Also store the teacher's final first-token ([CLS]) hidden vector (for distill's hidden-kl); a tagger's per word.")] = False,
    fields: common.Fields = None,
    batch_size: common.BatchSize = 64,
    max_length: Annotated[int | None, typer.Option("--max-length", min=8, help="Truncation (default: the teacher's).")] = None,
    shard: common.Shard = None,
    device: common.Device = "auto",
    engine: common.Engine = "auto",
    compute_type: common.EngineComputeType = None,
    rescore_margin: common.RescoreMargin = None,
    threads: common.EngineThreads = 0,
    output: common.Output = None,
    allow_pickle: common.AllowPickle = False,
    force: common.Force = False,
    on_error: common.OnError = "fail",
    quiet: common.Quiet = False,
    verbose: common.Verbose = False,
) -> None:
    """Run a teacher over records and attach `"teacher": {"logits", "probs", "labels",
    "temperature", "model"}` (1:1, streaming, input order kept).

    The teacher reads each record's `src` view when present (its language), else the record.
    Tagging records (`tokens`) with a tagger teacher get one row of logits/probs (/hidden) per
    word, at the word's first subword: a `src` view must have as many words as `tokens`, and the
    teacher must see every word (records that break this are bad input, --on-error skip skips them).
    With --engine auto (default) BERT/XLM-R/RoBERTa/DistilBERT teachers run on CTranslate2 (int8 on
    CPU, near-ties re-scored in float32, --rescore-margin; float16 on GPU), converted once into the
    xlt cache; other models run in torch. int8 trades exactness for speed: ~98.8 % argmax agreement
    with the teacher's float32 outputs on XNLI (RESULTS.md); --compute-type float32 gives them exactly.

    Several --teacher models make an ensemble: `teacher.logits` is the mean of their logits
    (each in the first teacher's label order), `probs` its softmax; --hidden takes one teacher.

    Example: xlt pair --src en dev.*.jsonl | xlt soft-label --teacher en.ckpt | xlt distill --student me5-small --out st.ckpt -
    """
    with common.stage("soft-label", output=output, force=force, quiet=quiet, verbose=verbose) as run:
        from xlt import log
        from xlt.distill.softlabel import ViewCheck, soft_label
        from xlt.inference.ensemble import load_teacher
        from xlt.io import iter_located, parse_shard, take_shard
        from xlt.records import parse_fields

        shard_spec = parse_shard(shard)
        chosen = parse_fields(fields)
        ViewCheck(view, chosen)  # a bad --view fails before the teacher loads
        if hidden and len(teacher) > 1:
            from xlt.errors import UsageError

            raise UsageError("--hidden stores one teacher's vectors: an ensemble of teachers has no one vector "
                             "space (give one --teacher)")
        clf = load_teacher(teacher, device=device, batch_size=batch_size, max_length=max_length, engine=engine,
                           compute_type=compute_type, threads=threads, rescore_margin=rescore_margin)
        check = ViewCheck(view, chosen, teacher=clf)
        located = take_shard(iter_located(files, validate=check, on_error=on_error, skipped=run.skipped), shard_spec)
        records = soft_label(log.track(located, description="soft-label"), clf, which=view,
                             fields=chosen, temperature=temperature, hidden=hidden, check=check)
        n_out = run.write(records, output)
        run.after(lambda: _log_done(n_out, teacher, clf))


def _log_done(n_out: int, teacher: list[str], clf: Any) -> None:
    from xlt import log

    what = teacher[0] if len(teacher) == 1 else f"the mean logits of {len(teacher)} teachers ({', '.join(teacher)})"
    log.info(f"labelled {n_out} record(s) with {what} ({clf.engine_name})")
    note = clf.engine_note()
    if note:
        log.info(note)


def register(app: typer.Typer) -> None:
    app.command("soft-label")(soft_label_cli)
