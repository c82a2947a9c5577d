"""The training loop's state (`LoopState`), resumable from disk without pickle: tensors in
safetensors, the rest in JSON.

`torch.load` of a pickle runs whatever code the file names, so anyone who can write into
`<out>.partial/` could run code as the next `--resume`. Here loading only ever produces tensors
(safetensors) and JSON values: dicts, lists, tuples, numbers, strings.

A save writes `state-<token>.safetensors` (a new name each time), then `state.json`, which names
that file and its token: the JSON is written last and atomically, so it always points at a
complete tensor file and a half-written pair is never loaded. Older tensor files go after that.

The state dir also holds a marker (`.xlt-partial`) written when xlt creates it: only a dir xlt
recognizably wrote is ever cleared, and then only the files xlt writes.
"""

from __future__ import annotations

import json
import os
import random
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from xlt.errors import UsageError

FORMAT = "xlt-loop-state/1"
STATE_JSON = "state.json"
MARKER = ".xlt-partial"
LEGACY = "state.pt"  # older xlt pickled the state: recognised (to clear it), never loaded

_TENSOR_FILE = re.compile(r"state-[0-9a-f]{16}\.safetensors")
# Every name xlt writes in a state dir, with the temporaries of atomic_path (`.NAME.tmp-XXXX`)
# and of older versions (`state.pt.tmp`) that a killed run can leave behind; `runs/` holds the
# tracker logs of a run with --report-to (xlt.train.tracking), moved into the checkpoint at the end.
_OURS = re.compile(r"(\.xlt-partial|state\.json|runs|state-[0-9a-f]{16}\.safetensors|state\.pt(\.tmp)?"
                   r"|\.(state\.json|state-[0-9a-f]{16}\.safetensors)\.tmp-\w+)")

_TENSOR, _TUPLE, _INT_KEYS = "__tensor__", "__tuple__", "__int_keys__"


@dataclass
class LoopState:
    """Everything `train()` needs to continue a run exactly where it stopped.

    `owner` says what the state belongs to (command, base model or student, labels) and `model`
    holds the trainable tensors, whose names and shapes must fit the model that resumes.
    `optimizer` and `scheduler` are their `state_dict()`s; `rng` holds one RNG state per rank.

    During a run the training loop keeps its position (step, epoch, batch, examples seen, time),
    the dev history, the best dev state and the log in one `LoopState`; the tensors of the live
    model, optimizer, scheduler and RNGs are taken only when it saves (`save_run`) and put back
    when it resumes (`restore`).
    """

    owner: dict[str, Any]
    world: int
    step: int
    epoch: int
    batch_pos: int
    seen: int
    train_time: float
    model: dict[str, Any]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    rng: list[dict[str, Any]]
    best: dict[str, Any] | None = None
    best_state: dict[str, Any] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    log: list[dict[str, Any]] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    inputs: Any = None

    @classmethod
    def start(cls, *, owner: Mapping[str, Any], world: int, config: dict[str, Any], inputs: Any) -> "LoopState":
        """The state of a run before its first step."""
        return cls(owner=dict(owner), world=world, step=0, epoch=0, batch_pos=0, seen=0, train_time=0.0,
                   model={}, optimizer={}, scheduler={}, rng=[], config=config, inputs=inputs)

    def save_run(self, directory: str, *, model: Any, optimizer: Any, scheduler: Any, rng: list[dict[str, Any]]) -> None:
        """`save` with the tensors of the live run: the model's trainable tensors, the optimizer's and
        scheduler's state and `rng`, the RNG state of every rank (copies are not kept after)."""
        self.model, self.optimizer, self.scheduler, self.rng = (trainable_state(model), optimizer.state_dict(),
                                                                scheduler.state_dict(), rng)
        try:
            self.save(directory)
        finally:
            self.model, self.optimizer, self.scheduler, self.rng = {}, {}, {}, []

    def check_resumes(self, *, owner: Mapping[str, Any], model: Any, inputs: Any, world: int, where: str) -> None:
        """Refuse (one line) to continue a run of another model, label set, input data or number of processes."""
        self.check_fits(owner=owner, where=where,
                        trainable={k: list(v.shape) for k, v in trainable_tensors(model).items()})
        if self.inputs != inputs:
            raise UsageError(f"--resume: the input data differ from the interrupted run's ({where}); resume with the same files")
        if self.world != world:
            raise UsageError(f"--resume: the state was saved by {self.world} process(es), this run has {world}")

    def restore(self, *, model: Any, optimizer: Any, scheduler: Any, rank: int) -> None:
        """Put the saved tensors back into the live run: the model's trainable tensors, the
        optimizer's and scheduler's state and this rank's RNG state (the loaded copies are dropped)."""
        model.load_state_dict(self.model, strict=False)
        optimizer.load_state_dict(self.optimizer)
        scheduler.load_state_dict(self.scheduler)
        set_rng_state(self.rng[rank])
        self.model, self.optimizer, self.scheduler, self.rng = {}, {}, {}, []

    def save(self, directory: str) -> None:
        """Write the state into `directory` (which exists), replacing the previous one atomically."""
        from safetensors.torch import save_file

        from xlt.io import atomic_path

        tensors: dict[str, Any] = {}
        body = _encode({f.name: getattr(self, f.name) for f in fields(self)}, tensors, "")
        token = secrets.token_hex(8)
        tensor_name = f"state-{token}.safetensors"
        with atomic_path(os.path.join(directory, tensor_name), force=True, what="resume state") as tmp:
            save_file(tensors, tmp, metadata={"format": FORMAT, "token": token})
        # allow_nan: a dev metric may be NaN; Python's json reads it back.
        text = json.dumps({"format": FORMAT, "tensors": tensor_name, "token": token, "state": body})
        with atomic_path(os.path.join(directory, STATE_JSON), force=True, what="resume state") as tmp:
            with open(tmp, "w", encoding="utf-8") as fh:
                fh.write(text)
        for name in os.listdir(directory):
            if _TENSOR_FILE.fullmatch(name) and name != tensor_name:
                _unlink(os.path.join(directory, name))

    @classmethod
    def load(cls, directory: str) -> "LoopState":
        """Read the state saved in `directory`; anything unreadable or foreign -> UsageError (one line)."""
        from safetensors import safe_open

        path = os.path.join(directory, STATE_JSON)
        doc, tensor_path = _read_doc(directory)
        token = doc["token"]
        try:
            with safe_open(tensor_path, framework="pt", device="cpu") as st:
                meta = st.metadata() or {}
                tensors = {k: st.get_tensor(k) for k in st.keys()}
        except Exception as exc:  # safetensors raises its own error type, OSError or ValueError
            raise _unreadable(tensor_path, _reason(exc)) from None
        if meta.get("token") != token:
            raise _unreadable(tensor_path, f"it does not belong to {path} (a different save)")
        try:
            body = _decode(doc.get("state"), tensors)
            state = cls(**body)
        except (KeyError, TypeError, ValueError) as exc:
            raise _unreadable(path, _reason(exc)) from None
        state._validate(path)
        return state

    def _validate(self, path: str) -> None:
        import torch

        ints = ("world", "step", "epoch", "batch_pos", "seen")
        if not all(type(getattr(self, k)) is int and getattr(self, k) >= 0 for k in ints) or self.world < 1:
            raise _unreadable(path, f"{', '.join(ints)} must be counts")
        if not isinstance(self.train_time, (int, float)) or not isinstance(self.owner, dict):
            raise _unreadable(path, "bad train_time or owner")
        for what, value in (("model", self.model), ("best_state", self.best_state or {})):
            if not isinstance(value, dict) or not all(isinstance(v, torch.Tensor) for v in value.values()):
                raise _unreadable(path, f"{what} is not a set of tensors")
        if not isinstance(self.optimizer, dict) or not isinstance(self.scheduler, dict):
            raise _unreadable(path, "optimizer or scheduler state missing")
        if not isinstance(self.rng, list) or len(self.rng) != self.world or not all(isinstance(r, dict) for r in self.rng):
            raise _unreadable(path, "one RNG state per process expected")

    def check_fits(self, *, owner: Mapping[str, Any], trainable: Mapping[str, Sequence[int]], where: str) -> None:
        """Refuse (one line) a state saved for another model, label set or set of trainable tensors."""
        again = "rerun with the same options, or without --resume to start over"
        for name in dict.fromkeys([*self.owner, *owner]):
            if self.owner.get(name) != owner.get(name):
                raise UsageError(f"--resume: the state in {where} was saved by a run with {name} {_show(self.owner.get(name))}; "
                                 f"this run has {name} {_show(owner.get(name))}: {again}")
        saved = {k: list(v.shape) for k, v in self.model.items()}
        here = {k: list(v) for k, v in trainable.items()}
        if saved == here:
            return
        changed = [k for k in saved if k in here and saved[k] != here[k]]
        only_saved = [k for k in saved if k not in here]
        only_here = [k for k in here if k not in saved]
        if changed:
            detail = f"{changed[0]} is {saved[changed[0]]} in the state and {here[changed[0]]} here"
        elif only_here:
            detail = f"{only_here[0]} is trained here but not in the state"
        else:
            detail = f"{only_saved[0]} is in the state but not trained here"
        n = len(changed) + len(only_saved) + len(only_here)
        more = f" ({n - 1} more tensors differ)" if n > 1 else ""
        raise UsageError(f"--resume: the state in {where} does not fit this model: {detail}{more}: {again}")


def trainable_tensors(model: Any) -> dict[str, Any]:
    """Trainable parameters and buffers: what a resumed or best model needs beyond its base."""
    params = dict(model.named_parameters())
    return {k: v for k, v in model.state_dict().items() if k not in params or params[k].requires_grad}


def trainable_state(model: Any) -> dict[str, Any]:
    """A CPU copy of `trainable_tensors(model)`."""
    return {k: v.detach().cpu().clone() for k, v in trainable_tensors(model).items()}


def rng_state() -> dict[str, Any]:
    """The state of the python, numpy, torch (and CUDA) RNGs, as tensors and JSON data."""
    import numpy as np
    import torch

    # numpy's key array as a list: the state is saved as tensors + JSON, never pickled
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": random.getstate(), "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    import numpy as np
    import torch

    random.setstate(state["python"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _read_doc(directory: str) -> tuple[dict[str, Any], str]:
    """The parsed `state.json` of `directory` and the path of the tensor file it names."""
    path = os.path.join(directory, STATE_JSON)
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise _unreadable(path, _reason(exc)) from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise _unreadable(path, f"not an xlt resume state (format {FORMAT} expected)")
    name, token = doc.get("tensors"), doc.get("token")
    # The name must be one this module writes: a crafted `../../x` must not be opened.
    if not isinstance(name, str) or not _TENSOR_FILE.fullmatch(name) or not isinstance(token, str):
        raise _unreadable(path, "no valid tensor file named")
    tensor_path = os.path.join(directory, name)
    if not os.path.isfile(tensor_path):
        raise _unreadable(tensor_path, "the tensor file is missing")
    return doc, tensor_path


def check_state(directory: str) -> None:
    """Cheap early check of a saved state (its JSON, and that its tensor file is there): a broken
    state is reported before the data and model are loaded. `LoopState.load` checks the rest."""
    _read_doc(directory)


def has_state(directory: str) -> bool:
    return os.path.isfile(os.path.join(directory, STATE_JSON))


def has_legacy_state(directory: str) -> bool:
    return os.path.isfile(os.path.join(directory, LEGACY))


def why_not_ours(directory: str) -> str | None:
    """None when `directory` is xlt's state dir (its marker or state files, and nothing else);
    else why it is someone else's. A link or a file at that path is never xlt's."""
    if os.path.islink(directory) or not os.path.isdir(directory):
        return "it is a link or a file, not a directory xlt made"
    names = sorted(os.listdir(directory))
    if not names:
        return "it is empty, without xlt's marker"
    others = [n for n in names if not _OURS.fullmatch(n)]
    if others:
        return "it holds " + ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
    if not any(n in (MARKER, STATE_JSON, LEGACY) for n in names):
        return "it has no xlt marker or state"
    return None


def check_state_dir(directory: str) -> None:
    """A `<out>.partial` that xlt did not write is refused (never deleted)."""
    if not os.path.lexists(directory):
        return
    why = why_not_ours(directory)
    if why is not None:
        raise UsageError(f"{directory} exists and is not xlt's resume state ({why}); move it away or rename it: "
                         "xlt keeps an interrupted run's state there")


def make_state_dir(directory: str) -> None:
    """Create the state dir with its marker (atomically: a dir without the marker is never xlt's)."""
    if os.path.isdir(directory):
        if not os.path.exists(os.path.join(directory, MARKER)):  # resuming a state copied from elsewhere
            open(os.path.join(directory, MARKER), "w").close()
        return
    from xlt.io import atomic_path

    with atomic_path(directory, force=False, what="resume state dir", is_dir=True) as tmp:
        with open(os.path.join(tmp, MARKER), "w", encoding="utf-8") as fh:
            fh.write("resumable training state of xlt (teach/distill); removed when the run completes\n")


def remove_state_dir(directory: str) -> bool:
    """Delete the files xlt wrote in `directory`, then the dir if that emptied it. False when
    something else is left (a file the user put there): it stays, with the dir."""
    if os.path.islink(directory) or not os.path.isdir(directory):
        return not os.path.lexists(directory)
    for name in os.listdir(directory):
        if _OURS.fullmatch(name):
            path = os.path.join(directory, name)
            if os.path.isdir(path) and not os.path.islink(path):
                import shutil

                shutil.rmtree(path, ignore_errors=True)
            else:
                _unlink(path)
    try:
        os.rmdir(directory)
    except OSError:
        return False
    return True


def _encode(obj: Any, tensors: dict[str, Any], path: str) -> Any:
    """JSON for `obj`, with each tensor moved into `tensors` under its path; anything that is
    neither a tensor nor plain JSON data is a bug, refused here rather than pickled."""
    import torch

    if isinstance(obj, torch.Tensor):
        tensors[path] = obj.detach().cpu().contiguous()
        return {_TENSOR: path}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if type(obj).__module__ == "numpy" and hasattr(obj, "item") and getattr(obj, "ndim", None) == 0:
        return obj.item()  # a numpy scalar in a metric
    if isinstance(obj, tuple):
        return {_TUPLE: [_encode(v, tensors, f"{path}/{i}") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_encode(v, tensors, f"{path}/{i}") for i, v in enumerate(obj)]
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {k: _encode(v, tensors, f"{path}/{k}") for k, v in obj.items()}
        if all(isinstance(k, int) and not isinstance(k, bool) for k in obj):  # optimizer state: param index -> state
            return {_INT_KEYS: {str(k): _encode(v, tensors, f"{path}/{k}") for k, v in obj.items()}}
        raise TypeError(f"resumable state: {path or '/'} has keys that are neither all strings nor all ints")
    raise TypeError(f"resumable state: {path or '/'} is a {type(obj).__name__}, neither a tensor nor JSON data")


def _decode(obj: Any, tensors: Mapping[str, Any]) -> Any:
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if len(obj) == 1:
        (key, value), = obj.items()
        if key == _TENSOR:
            if not isinstance(value, str) or value not in tensors:
                raise ValueError(f"tensor {str(value)[:80]!r} is missing from the tensor file")
            return tensors[value]
        if key == _TUPLE and isinstance(value, list):
            return tuple(_decode(v, tensors) for v in value)
        if key == _INT_KEYS and isinstance(value, dict):
            return {int(k): _decode(v, tensors) for k, v in value.items()}
    return {k: _decode(v, tensors) for k, v in obj.items()}


def _show(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False) if value is not None else "(none)"
    return text if len(text) <= 80 else text[:77] + "..."


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def _unreadable(path: str, reason: str) -> UsageError:
    return UsageError(f"--resume: cannot read the saved state {path}: {reason}; "
                      "rerun without --resume to start over (or move the state dir away)")


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
