"""The stage contract (test_contract.py) for tagging records (`tokens` + `tags`, one tag per word).

Every stage that takes tagging records: empty input (an empty file and empty stdin) behaves as for
classification records; `-` reads stdin and gives what the file path gives; bad JSON on line 3
and bad tagging records (tags not one per word, empty `tokens`, a word that is not a string, a
tag outside the label set) are one line `xlt STAGE: error: FILE:3: ...` naming the field, exit 2,
nothing written, and `--on-error skip` skips and counts them; `| head -n 1` is clean; stdout is
data only; an existing output needs `--force`; a word holding a space (`25 000`) is one word
everywhere. The stages that refuse tagging records (pair, perturb --method paraphrase, analyze)
refuse them in one line, from a file and from stdin.

Which bad records a stage refuses is what it reads: soft-label and translate read the words and
pass `tags` through (as they pass a classification `label`), perturb checks the tags against
the words (it moves them) but has no label set, split needs the key only.

Every command runs once per module, two at a time (the machine has two cores), and the tests
read their results; the models are tiny and built once per session. To keep the module short:
the stages that load a model before reading (eval, soft-label) run one bad tagging record in
`fail` mode, distill the two about tags, and meet the others in their `--on-error skip` run,
whose message names each one's FILE:LINE and field; the stages that see every record before
they write (teach, distill, eval) read the skip input from stdin, so one run checks `-`,
`--on-error skip` and that the result is the file path's (skipped records are never read).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from conftest import ROOT, run_xlt

POS = ROOT / "samples" / "pos"
SPACED = {"id": "pos-num", "lang": "en", "tokens": ["The", "city", "has", "25 000", "people", "."],
          "tags": ["DET", "NOUN", "VERB", "NUM", "NOUN", "PUNCT"]}
BAD_JSON = '{"id": "x", "lang": "en", "tokens": ["a"'
#: bad tagging records: what is done to a good record, and what the error line must name
BAD = {
    "tags-length": (lambda r: r.update(tags=r["tags"][:-1]), ['"tags" has', "tags for", "tokens"]),
    "empty-tokens": (lambda r: r.update(tokens=[], tags=[]), ['"tokens" is empty']),
    "non-string-word": (lambda r: r["tokens"].__setitem__(0, 3), ['"tokens[0]" must be a string']),
    "unknown-tag": (lambda r: r["tags"].__setitem__(0, "X"), ['"tags[0]"', "'X'", "label set"]),
}
WORKERS = 2  # the machine has two cores, shared


def read(path) -> list[dict]:
    return [json.loads(x) for x in Path(path).read_text(encoding="utf-8").splitlines() if x.strip()]


def err(proc) -> str:
    return proc.stderr.decode("utf-8", "replace")


def error_line(proc, command: str) -> str:
    """The one `xlt COMMAND: error: ...` line (and no traceback)."""
    text = err(proc)
    assert "Traceback" not in text, text[-2000:]
    errors = [x for x in text.splitlines() if x.startswith(f"xlt {command}: error: ")]
    assert len(errors) == 1, text[-2000:]
    return errors[0]


# --- models and data, built once ------------------------------------------------------------

@pytest.fixture(scope="session")
def tag_home(tmp_path_factory) -> dict:
    """One $XLT_HOME (converted MT models, tokenization caches) for every command of the module."""
    return {"XLT_HOME": str(tmp_path_factory.mktemp("tag-contract-home"))}


def _tiny_mt(home: dict, tmp_path_factory) -> dict:
    """Tiny random Marian en->fr and fr->en models (the way back of a paraphrase), converted once."""
    from test_mt_models import make_marian

    from xlt.mt.model import ensure_ct2

    en_fr = make_marian(str(tmp_path_factory.mktemp("tag-contract-en-fr")))
    fr_en = make_marian(str(tmp_path_factory.mktemp("tag-contract-fr-en")), source_lang="fr", target_lang="en", seed=1)
    old = os.environ.get("XLT_HOME")
    os.environ["XLT_HOME"] = home["XLT_HOME"]
    try:
        for path in (en_fr, fr_en):
            ensure_ct2(path, quantization="int8")
    finally:
        if old is None:
            del os.environ["XLT_HOME"]
        else:
            os.environ["XLT_HOME"] = old
    return {"en-fr": en_fr, "fr-en": fr_en}


@pytest.fixture(scope="module")
def models(tiny_bert, tag_home, tmp_path_factory) -> dict:
    """The tiny tagger (xlt teach on samples/pos/en.jsonl; taught while the MT models are built),
    the tiny encoder, the MT models and a synonym file."""
    tagger = str(tmp_path_factory.mktemp("tag-contract-tagger") / "ck")
    teach = subprocess.Popen([sys.executable, "-m", "xlt", "teach", "--model", tiny_bert, "--out", tagger,
                              "--epochs", "1", "--batch-size", "4", "-q", str(POS / "en.jsonl")],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ, **tag_home))
    try:
        mt = _tiny_mt(tag_home, tmp_path_factory)
    finally:
        _, errors = teach.communicate(timeout=600)
    assert teach.returncode == 0, errors.decode()[-2000:]
    syn = tmp_path_factory.mktemp("tag-contract-syn") / "syn.txt"
    syn.write_text("city town\npeople folk\ndog hound\nhouse home\nsmall little\nbook novel\n", encoding="utf-8")
    with open(f"{tagger}/xlt.json", encoding="utf-8") as fh:
        tagger_labels = json.load(fh)["labels"]
    return {"bert": tiny_bert, "tagger": tagger, "tagger_labels": ",".join(tagger_labels), "marian": mt["en-fr"],
            "mt": mt, "syn": str(syn)}


def good_records() -> list[dict]:
    """Seven UPOS sentences of the sample and one whose number is one word holding a space."""
    return [json.loads(x) for x in (POS / "en.jsonl").read_text(encoding="utf-8").splitlines()[:7]] + [SPACED]


def bad_record(good: dict, kind: str) -> dict:
    rec = json.loads(json.dumps(good))
    rec["id"] = f"bad-{kind}"
    BAD[kind][0](rec)
    return rec


@dataclass
class Inputs:
    good: Path
    records: list[dict]
    empty: Path
    bad_json: Path  # bad JSON on line 3
    bad: dict[str, Path]  # a bad tagging record on line 3
    mixed: Path  # bad JSON on line 3, then each bad record (lines 4...), among the good ones
    big: Path  # far more than a pipe buffer


def write_inputs(d: Path, records: list[dict], *, big: bool = True) -> Inputs:
    d.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(r, ensure_ascii=False) for r in records]

    def put(name: str, content: list[str]) -> Path:
        (d / name).write_text("".join(x + "\n" for x in content), encoding="utf-8")
        return d / name

    bad = {k: put(f"bad-{k}.jsonl", lines[:2] + [json.dumps(bad_record(records[2], k))] + lines[2:]) for k in BAD}
    mixed = lines[:2] + [BAD_JSON] + [json.dumps(bad_record(records[2], k)) for k in BAD] + lines[2:]
    many = [json.dumps({**r, "id": f"{r['id']}-{i}"}, ensure_ascii=False) for i in range(750) for r in records] if big else []
    return Inputs(put("good.jsonl", lines), records, put("empty.jsonl", []),
                  put("bad-json.jsonl", lines[:2] + [BAD_JSON] + lines[2:]), bad, put("mixed.jsonl", mixed),
                  put("big.jsonl", many))


@pytest.fixture(scope="module")
def tag_inputs(tmp_path_factory) -> Inputs:
    return write_inputs(tmp_path_factory.mktemp("tag-contract-data"), good_records())


# --- the stages -----------------------------------------------------------------------------

@dataclass
class Stage:
    command: str
    kind: str  # stream (records out, 1:1 or 1:N), train (a checkpoint dir), report (eval)
    argv: Callable[[dict, list[str], "Path | None", Path], list[str]]  # (models, inputs, output or None: stdout, work dir)
    bad: tuple[str, ...]  # the bad tagging records it refuses
    soft: bool = False  # reads soft-labelled records
    fail: tuple[str, ...] | None = None  # the bad records run in `fail` mode (default: all of `bad`)

    @property
    def whole(self) -> bool:
        """Sees every record before it writes (a checkpoint, a report): `-` runs the skip input."""
        return self.kind != "stream"


def _o(out: Path | None) -> list[str]:
    return ["-o", str(out)] if out is not None else []


def _eval(m, inp, out, work):
    pred = Path(f"{out}.pred.jsonl") if out is not None else work / "pred.jsonl"
    return ["eval", "--model", m["tagger"], "--engine", "torch", *inp, *_o(out), "--predictions", str(pred)]


ALL = tuple(BAD)
WORDS_ONLY = ("empty-tokens", "non-string-word")  # stages that read the words and pass `tags` through
TRAIN = ["--max-steps", "1", "--batch-size", "4"]
TEACH_LABELS = "ADJ,ADP,AUX,CCONJ,DET,NOUN,NUM,PRON,PUNCT,VERB"  # the tags of good_records()

STAGES: dict[str, Stage] = {
    "teach": Stage("teach", "train", lambda m, inp, out, w: [
        "teach", *inp, "--model", m["bert"], "--labels", TEACH_LABELS, *TRAIN, "--out", str(out)], ALL),
    "eval": Stage("eval", "report", _eval, ALL, fail=("unknown-tag",)),
    "soft-label": Stage("soft-label", "stream", lambda m, inp, out, w: [
        "soft-label", "--teacher", m["tagger"], "--engine", "torch", *inp, *_o(out)], WORDS_ONLY,
        fail=("non-string-word",)),
    "distill": Stage("distill", "train", lambda m, inp, out, w: [
        "distill", *inp, "--student", m["bert"], "--labels", m["tagger_labels"], *TRAIN, "--out", str(out)],
        ALL, soft=True, fail=("tags-length", "unknown-tag")),  # the words' checks are teach's reader's
    "distill-cnn": Stage("distill", "train", lambda m, inp, out, w: [
        "distill", *inp, "--student-arch", "cnn", "--vocab-size", "300", "--labels", m["tagger_labels"], *TRAIN,
        "--out", str(out)], ALL, soft=True, fail=()),  # the same reader as distill's (before the student)
    "perturb-swap": Stage("perturb", "stream", lambda m, inp, out, w: [
        "perturb", "--method", "swap", "--p", "0.5", "--copies", "2", *inp, *_o(out)],
        ("tags-length", "empty-tokens", "non-string-word")),
    "perturb-synonym": Stage("perturb", "stream", lambda m, inp, out, w: [
        "perturb", "--method", "synonym", "--synonyms", m["syn"], "--copies", "2", *inp, *_o(out)],
        ("tags-length", "empty-tokens", "non-string-word")),
    "split": Stage("split", "stream", lambda m, inp, out, w: [
        "split", *inp, "--into", f"{out if out is not None else '-'}:1"], ()),  # field-agnostic: needs `id` only
    "translate": Stage("translate", "stream", lambda m, inp, out, w: [
        "translate", "--model", m["marian"], "--tgt", "fr", "--beam-size", "1", "--max-length", "6", "--threads", "1",
        *inp, *_o(out)], WORDS_ONLY),
}
STREAMING = [k for k, s in STAGES.items() if s.kind == "stream"]


@dataclass
class Run:
    proc: subprocess.CompletedProcess
    work: Path  # the run's own directory: its outputs and nothing else
    out: Path | None  # where the output went (None: stdout)


def _existing(out: Path, stage: Stage) -> None:
    """An earlier output at `out` (and eval's predictions next to it)."""
    if stage.kind == "train":
        out.mkdir()
        (out / "keep.txt").write_text("keep\n")
    else:
        out.write_text("keep\n")
        if stage.kind == "report":
            Path(f"{out}.pred.jsonl").write_text("keep\n")


def plan_stage(name: str, models: dict, inputs: Inputs, home: dict, base: Path, ready=lambda: None
               ) -> dict[str, Callable[[], Run]]:
    """Every command of one stage's contract (`ready` waits for its inputs)."""
    stage = STAGES[name]
    jobs: dict[str, Callable[[], Run]] = {}

    def job(run: str, inp: list[str], *, stdin: Path | bytes | None = None, out: str | None = "out",
            existing: bool = False, extra: tuple[str, ...] = ()) -> None:
        work = base / name / run
        work.mkdir(parents=True)
        # training stages always write a checkpoint dir: there is no stdout output to ask for
        target = work / (out or "out") if out is not None or stage.kind == "train" else None
        if existing:
            _existing(target, stage)
        argv = [*stage.argv(models, inp, target, work), *extra]

        def go() -> Run:
            ready()
            data = stdin.read_bytes() if isinstance(stdin, Path) else stdin
            return Run(run_xlt(*argv, input=data, env=home, cwd=work), work, target)

        jobs[run] = go

    job("file", [str(inputs.good)], existing=True, extra=("--force",))
    if stage.whole:
        job("dash", ["-"], stdin=inputs.mixed, out=None, extra=("--on-error", "skip"))
    else:
        job("dash", ["-"], stdin=inputs.good, out=None)
        job("skip", [str(inputs.mixed)], extra=("--on-error", "skip"))
    job("no-force", [str(inputs.good)], existing=True)
    job("empty", ["-", str(inputs.empty)], stdin=b"", out=None)
    job("bad-json", [str(inputs.bad_json)])
    for kind in stage.bad if stage.fail is None else stage.fail:
        job(f"bad-{kind}", [str(inputs.bad[kind])])
    return jobs


def plan_head(name: str, models: dict, inputs: Inputs, home: dict, base: Path, ready=lambda: None
              ) -> Callable[[], tuple[subprocess.CompletedProcess, Path]]:
    """`xlt STAGE BIG | head -n 1`, xlt's own exit status in `status`."""
    work = base / name / "head"
    work.mkdir(parents=True)
    argv = STAGES[name].argv(models, [str(inputs.big)], None, work)
    cmd = " ".join([sys.executable, "-m", "xlt", *argv]) + ' | head -n 1; echo "${PIPESTATUS[0]}" > status'

    def go():
        ready()
        return subprocess.run(cmd, shell=True, executable="/bin/bash", capture_output=True, timeout=600, cwd=work,
                              env=dict(os.environ, **home)), work

    return go


@pytest.fixture(scope="module")
def all_runs(models, tiny_classifier, tag_inputs, tag_home, tmp_path_factory):
    """Every command of the module, submitted at once to a pool of two: soft-label's file run
    first, whose output (soft-labelled records) is distill's input."""
    base = tmp_path_factory.mktemp("tag-contract")
    soft_inputs = Inputs(**{k: (base / "soft-in" / v.name if isinstance(v, Path) else v)
                            for k, v in vars(tag_inputs).items()})
    soft_inputs.bad = {k: base / "soft-in" / v.name for k, v in tag_inputs.bad.items()}
    jobs: dict[tuple[str, str], Callable] = {}
    for name in ["soft-label"] + [n for n in STAGES if n != "soft-label" and not STAGES[n].soft]:
        for run, fn in plan_stage(name, models, tag_inputs, tag_home, base).items():
            jobs[(name, run)] = fn
    for name in STREAMING:
        jobs[(name, "head")] = plan_head(name, models, tag_inputs, tag_home, base)
    jobs.update(plan_refusals(models, models["mt"], tiny_classifier, tag_inputs, tag_home, base))
    lock = threading.Lock()
    futures: dict[tuple[str, str], Future] = {}

    def soft_ready() -> None:
        """Waits for soft-label's file run (submitted first: already running) and writes distill's inputs."""
        run = futures[("soft-label", "file")].result()
        with lock:
            if not (base / "soft-in").exists():
                assert run.proc.returncode == 0, err(run.proc)[-2000:]
                recs = read(run.out)
                write_inputs(base / "soft-in", recs, big=False)  # no head run: distill is not streaming
                soft_inputs.records = recs

    for name in [n for n in STAGES if STAGES[n].soft]:
        for run, fn in plan_stage(name, models, soft_inputs, tag_home, base, ready=soft_ready).items():
            jobs[(name, run)] = fn
    # the longest first (trainings, then model loads), soft-label's file run before any run waiting on it
    first = ["soft-label:file", "eval:file", "distill", "distill-cnn", "teach", "refuse-analyze", "soft-label", "eval"]
    rank = {k: i for i, k in enumerate(first)}
    order = sorted(jobs, key=lambda k: rank.get(f"{k[0]}:{k[1]}", rank.get(k[0], len(first))))
    with ThreadPoolExecutor(WORKERS) as pool:
        for key in order:
            futures[key] = pool.submit(jobs[key])
        yield {"futures": futures, "inputs": lambda name: soft_inputs if STAGES[name].soft else tag_inputs,
               "soft_ready": soft_ready}
        for f in futures.values():
            f.cancel()


@pytest.fixture(scope="module")
def results(all_runs):
    """`results(stage)`: the stage's runs ({run name: Run}) and its inputs."""
    def get(name: str) -> tuple[dict, Inputs]:
        runs = {run: f.result() for (stage, run), f in all_runs["futures"].items() if stage == name}
        if STAGES.get(name) is not None and STAGES[name].soft:
            all_runs["soft_ready"]()
        return runs, all_runs["inputs"](name) if name in STAGES else None

    return get


def output_records(run: Run) -> list[dict]:
    """What a streaming run wrote: its -o file, or its stdout (checked to be JSON records only)."""
    if run.out is not None:
        return read(run.out)
    recs = []
    for line in run.proc.stdout.decode("utf-8").splitlines():
        rec = json.loads(line)
        assert isinstance(rec, dict) and "id" in rec, line
        recs.append(rec)
    return recs


def manifest(ckpt: Path) -> dict:
    return json.loads((ckpt / "xlt.json").read_text())


def weights(ckpt: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(ckpt / "model.safetensors"))


# --- 1. empty input ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(STAGES))
def test_empty_file_and_empty_stdin(name, results):
    """As for classification records: training stages and eval say `no records` (exit 2, nothing
    written); streaming stages write nothing and exit 0."""
    runs, _ = results(name)
    run, stage = runs["empty"], STAGES[name]
    if stage.kind == "stream":
        assert run.proc.returncode == 0, err(run.proc)[-2000:]
        assert run.proc.stdout == b"" and "Traceback" not in err(run.proc)
    else:
        assert run.proc.returncode == 2, err(run.proc)[-2000:]
        assert "no records" in error_line(run.proc, stage.command)
        assert run.proc.stdout == b""
    assert list(run.work.iterdir()) == []


# --- 2. `-` is stdin, and gives what the path gives; 6. stdout is data -------------------------

@pytest.mark.parametrize("name", sorted(STAGES))
def test_dash_reads_stdin_like_the_file(name, results):
    runs, inputs = results(name)
    file, dash = runs["file"], runs["dash"]
    for run in (file, dash):
        assert run.proc.returncode == 0, err(run.proc)[-3000:]
        assert "Traceback" not in err(run.proc)
    kind = STAGES[name].kind
    if kind == "stream":
        assert dash.out is None
        got = output_records(dash)  # stdout: JSON records only
        assert got and got == read(file.out)
        assert dash.proc.stdout == file.out.read_bytes()
    elif kind == "report":
        report = json.loads(dash.proc.stdout)  # stdout: the report only
        assert report["task"] == "tagging"
        assert report["languages"] == json.loads(file.out.read_text())["languages"]
        assert report["languages"]["en"]["sentences"] == len(inputs.records)
        assert (dash.work / "pred.jsonl").read_bytes() == Path(f"{file.out}.pred.jsonl").read_bytes()
    else:
        assert dash.proc.stdout == b"" and file.proc.stdout == b""  # logs go to stderr
        a, b = manifest(file.out), manifest(dash.out)
        for key in ("fields", "labels", "train_langs"):
            assert a[key] == b[key], key
        assert a["fields"] == ["tokens"] and a["train_langs"] == {"en": len(inputs.records)}
        assert sorted(a["inputs"]["train"].values()) == sorted(b["inputs"]["train"].values())  # the same records
        wa, wb = weights(file.out), weights(dash.out)
        assert wa.keys() == wb.keys() and all((wa[k] == wb[k]).all() for k in wa)


# --- 3. bad JSON on line 3 --------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(STAGES))
def test_bad_json_on_line_3(name, results):
    runs, inputs = results(name)
    run = runs["bad-json"]
    assert run.proc.returncode == 2, err(run.proc)[-2000:]
    line = error_line(run.proc, STAGES[name].command)
    assert f"{inputs.bad_json}:3: invalid JSON" in line, line
    assert run.proc.stdout == b"" and list(run.work.iterdir()) == []


# --- 4. bad tagging records -------------------------------------------------------------------

def _bad_cases() -> list[tuple[str, str]]:
    return [(name, kind) for name, s in sorted(STAGES.items()) for kind in (s.bad if s.fail is None else s.fail)]


@pytest.mark.parametrize("name,kind", _bad_cases())
def test_bad_tagging_record_names_file_line_and_field(name, kind, results):
    runs, inputs = results(name)
    run = runs[f"bad-{kind}"]
    assert run.proc.returncode == 2, err(run.proc)[-2000:]
    line = error_line(run.proc, STAGES[name].command)
    assert f"{inputs.bad[kind]}:3: " in line, line
    for part in BAD[kind][1]:
        assert part in line, line
    assert run.proc.stdout == b"" and list(run.work.iterdir()) == []


@pytest.mark.parametrize("name", sorted(STAGES))
def test_on_error_skip_skips_and_counts(name, results):
    """The bad JSON (line 3) and each bad tagging record the stage refuses (lines 4...) are
    skipped, counted, and named by FILE:LINE and field; the good records all come through."""
    runs, inputs = results(name)
    stage = STAGES[name]
    run, where = (runs["dash"], "<stdin>") if stage.whole else (runs["skip"], str(inputs.mixed))
    text = err(run.proc)
    assert run.proc.returncode == 0, text[-3000:]
    lines = {3: ["invalid JSON"]} | {4 + list(BAD).index(k): BAD[k][1] for k in stage.bad}
    assert f"skipped {len(lines)} bad record" in text, text[-3000:]
    for n, parts in lines.items():
        assert f"{where}:{n}:" in text, (n, text[-3000:])
        said = text[text.index(f"{where}:{n}:"):]
        said = said[: min([len(said)] + [said.index(x) for x in (";", "\n", f"{where}:{n + 1}:") if x in said])]
        assert all(p in said for p in parts), (n, said)
    n = len(inputs.records)
    if stage.kind == "stream":
        ids = [r["id"] for r in read(run.out)]
        assert set(ids) >= {r["id"] for r in inputs.records}
        assert not [i for i in ids if i.startswith("bad-") and i[4:] in stage.bad]
    elif stage.kind == "report":
        assert json.loads(run.proc.stdout)["languages"]["en"]["sentences"] == n
    else:
        assert manifest(run.out)["train_langs"] == {"en": n}


# --- 5. `| head -n 1` ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(STREAMING))
def test_head_closes_the_pipe_cleanly(name, results):
    runs, _ = results(name)
    proc, work = runs["head"]
    text = err(proc)
    assert proc.returncode == 0 and len(proc.stdout.splitlines()) == 1, text[-2000:]
    assert json.loads(proc.stdout)["id"].startswith("pos-")
    assert "Traceback" not in text and "Error" not in text and "Broken pipe" not in text, text[-2000:]
    assert (work / "status").read_text().strip() in ("0", "141"), text[-2000:]  # done, or silent on SIGPIPE
    assert sorted(p.name for p in work.iterdir()) == ["status"]  # no temporary left


# --- 7. no clobbering -----------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(STAGES))
def test_existing_output_needs_force(name, results):
    runs, _ = results(name)
    stage = STAGES[name]
    refused, forced = runs["no-force"], runs["file"]
    assert refused.proc.returncode == 2, err(refused.proc)[-2000:]
    assert "--force" in error_line(refused.proc, stage.command)
    assert forced.proc.returncode == 0, err(forced.proc)[-2000:]
    if stage.kind == "train":
        assert sorted(p.name for p in refused.work.iterdir()) == ["out"]
        assert sorted(p.name for p in refused.out.iterdir()) == ["keep.txt"]
        assert not (forced.out / "keep.txt").exists() and manifest(forced.out)["fields"] == ["tokens"]
    else:
        assert refused.out.read_text() == "keep\n"
        assert forced.out.read_text() != "keep\n"
        if stage.kind == "report":
            assert Path(f"{refused.out}.pred.jsonl").read_text() == "keep\n"
            assert Path(f"{forced.out}.pred.jsonl").read_text() != "keep\n"
        else:
            assert read(forced.out)


# --- 8. a word holding a space stays one word -------------------------------------------------------

def _spaced(recs: list[dict]) -> list[dict]:
    return [r for r in recs if r["id"] == SPACED["id"]]


@pytest.mark.parametrize("name", ["split", "perturb-swap", "perturb-synonym", "soft-label", "eval", "translate"])
def test_a_word_with_a_space_survives(name, results):
    runs, _ = results(name)
    run = runs["file"]
    assert run.proc.returncode == 0, err(run.proc)[-2000:]
    if name == "eval":
        recs = _spaced(read(f"{run.out}.pred.jsonl"))
        assert len(recs) == 1 and recs[0]["tokens"] == SPACED["tokens"]
        assert len(recs[0]["pred"]["tags"]) == len(recs[0]["pred"]["probs"]) == 6
        return
    recs = _spaced(read(run.out))
    if name == "translate":  # the target words are new; the source view keeps the words as they were
        assert len(recs) == 1 and recs[0]["src"]["tokens"] == SPACED["tokens"]
        assert recs[0]["src"]["tags"] == SPACED["tags"]
        return
    first = [r for r in recs if r.get("aug", {}).get("copy", 0) == 0]
    assert len(first) == 1 and first[0]["tokens"] == SPACED["tokens"] and first[0]["tags"] == SPACED["tags"]
    if name.startswith("perturb"):
        assert first[0] == {**SPACED, "aug": first[0]["aug"]}
        copies = [r for r in recs if r["aug"]["copy"] > 0]
        assert len(copies) == 2
        for c in copies:  # words move or change whole: `25 000` is never split
            assert len(c["tokens"]) == 6 and "25 000" in c["tokens"]
            assert Counter(zip(c["tokens"], c["tags"]))[("25 000", "NUM")] == 1
    if name == "soft-label":
        t = first[0]["teacher"]
        assert len(t["logits"]) == len(t["probs"]) == 6  # one row per word


# --- the stages that refuse tagging records ------------------------------------------------------

REFUSAL = {"pair": "pair takes sentence records, not tagging records",
           "perturb": "--method paraphrase cannot perturb tagging records",
           "analyze": "tagging records (tokens + tags) are not supported"}


def plan_refusals(m: dict, mt: dict, clf: str, inputs: Inputs, home: dict, base: Path) -> dict:
    cmds = {
        "pair": ["pair", "--src", "en"],
        "perturb": ["perturb", "--method", "paraphrase", "--via", "fr", "--model", mt["en-fr"], "--back-model",
                    mt["fr-en"], "--threads", "1"],
        "analyze": ["analyze", "--model", clf, "--engine", "torch", "--threads", "1"],
    }
    jobs = {}
    for stage, cmd in cmds.items():
        runs = [("file", [str(inputs.good)], None, []), ("dash", ["-"], inputs.good, []),
                ("empty", ["-", str(inputs.empty)], b"", [])]
        if stage != "analyze":  # a model load each: analyze's skip run is left out
            runs.append(("skip", [str(inputs.mixed)], None, ["--on-error", "skip"]))
        for run, inp, stdin, extra in runs:
            work = base / f"refuse-{stage}" / run
            work.mkdir(parents=True)

            def go(argv=[*cmd, *inp, *extra], stdin=stdin, work=work):
                data = stdin.read_bytes() if isinstance(stdin, Path) else stdin
                return run_xlt(*argv, input=data, env=home, cwd=work), work

            jobs[(f"refuse-{stage}", run)] = go
    return jobs


@pytest.mark.parametrize("stage", sorted(REFUSAL))
def test_refused_in_one_line_from_a_file_and_from_stdin(stage, results, tag_inputs):
    """The first record is refused, naming FILE:1 (`<stdin>:1`), exit 2, nothing written; and
    `--on-error skip` does not skip the refusal (it is not one bad record)."""
    runs, _ = results(f"refuse-{stage}")
    cases = [("file", f"{tag_inputs.good}:1: "), ("dash", "<stdin>:1: "), ("skip", f"{tag_inputs.mixed}:1: ")]
    for run, where in [c for c in cases if c[0] in runs]:
        proc, work = runs[run]
        assert proc.returncode == 2, (run, err(proc)[-2000:])
        line = error_line(proc, stage)
        assert REFUSAL[stage] in line, (run, line)
        assert where in line, (run, line)
        assert proc.stdout == b"" and list(work.iterdir()) == []


@pytest.mark.parametrize("stage", sorted(REFUSAL))
def test_refusing_stages_on_empty_input(stage, results):
    """As for classification records: pair and perturb write nothing (exit 0), analyze says `no records`."""
    runs, _ = results(f"refuse-{stage}")
    proc, work = runs["empty"]
    if stage == "analyze":
        assert proc.returncode == 2 and "no records" in error_line(proc, stage)
    else:
        assert proc.returncode == 0, err(proc)[-2000:]
        assert "Traceback" not in err(proc)
    assert proc.stdout == b"" and list(work.iterdir()) == []
