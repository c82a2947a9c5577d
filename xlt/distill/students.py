"""Small students trained from scratch (FreeTransfer-X step two), saved like every xlt checkpoint.

FreeTransfer-X (Guo et al. 2022, NAACL Findings) distils an off-the-shelf source-language model
into a multilingual PLM and that into a small target-language model. These are the small models,
about 5 M parameters each with a 10k BPE vocabulary (`xlt.distill.bpe`):

    arch         encoder                                                   sentence vector (`.hidden`)
    transformer  4 pre-LN layers, d_model 256, 4 heads, FFN 1024,          masked mean of the final
                 learned positions, word embeddings of size d_model        states (pooling="mean"), or
                                                                           the first token ("cls")
    bilstm       word embeddings 256, 2-layer BiLSTM, 256 units per        [h_fwd; h_bwd] of the last
                 direction (512 together), packed (padding is not read)    layer's final states (512)
    cnn          word embeddings 384, Conv1d with kernel sizes 3/4/5 and   max-over-time per filter,
                 256 filters each, ReLU (Kim 2014)                         concatenated (768)

Head: optional projection to `pooled_size` (Linear + tanh, e.g. the teacher's hidden size for
the `hidden-kl` term), dropout, Linear to the classes.

Taggers (`XltSmallForTokenClassification`, same config) read the encoder per position instead:
the transformer's final states, the BiLSTM's top-layer outputs, the CNN's filters applied around
every position ("same" padding, one window per kernel size centred on the token, concatenated);
the optional projection and the classifier apply to every position, and a word's output is its
first subword's (xlt.tagging).

They are transformers `PreTrainedModel`s (config `XltSmallConfig`, model_type "xlt-small"),
registered with AutoConfig / AutoModelForSequenceClassification / AutoModelForTokenClassification
when this module is imported, so after `import xlt.distill.students` a checkpoint dir loads with
`AutoModelForSequenceClassification.from_pretrained(dir)` (a tagger with
`AutoModelForTokenClassification`) and saves safetensors. The forward takes
`input_ids`/`attention_mask` (or `inputs_embeds`, for `xlt.robust`) and returns
`StudentOutput(loss, logits, hidden_states, attentions, hidden)`; `token_type_ids` is accepted and
ignored (pairs arrive joined as "[CLS] A [SEP] B [SEP]" by the tokenizer).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import (AutoConfig, AutoModelForSequenceClassification, AutoModelForTokenClassification,
                          PreTrainedConfig, PreTrainedModel)
from transformers.modeling_outputs import SequenceClassifierOutput, TokenClassifierOutput

from xlt.distill.spec import STUDENT_ARCHS
from xlt.errors import UsageError

MODEL_TYPE = "xlt-small"

#: Per-architecture defaults for the fields left as None (chosen for ~5 M parameters at 10k vocab).
ARCH_DEFAULTS: dict[str, dict[str, Any]] = {
    "transformer": {"embedding_size": 256, "num_layers": 4, "pooling": "mean", "dropout": 0.1},
    "bilstm": {"embedding_size": 256, "num_layers": 2, "pooling": "last", "dropout": 0.2},
    "cnn": {"embedding_size": 384, "num_layers": 1, "pooling": "max", "dropout": 0.5},
}
POOLINGS = {"transformer": ("mean", "cls"), "bilstm": ("last",), "cnn": ("max",)}


class XltSmallConfig(PreTrainedConfig):
    """Configuration of a small student. Fields left None take `ARCH_DEFAULTS[arch]`.

    arch: transformer | bilstm | cnn. embedding_size: word embedding size (transformer: d_model).
    num_layers: transformer blocks / LSTM layers (cnn: 1). d_model, num_heads, ffn_size,
    max_position_embeddings: transformer. lstm_hidden: units per LSTM direction. kernel_sizes,
    num_filters: cnn. pooling: transformer "mean" | "cls". pooled_size: project the sentence vector
    to this size (None: its natural size). dropout: embeddings/hidden (transformer) or before the
    classifier (all).
    """

    model_type = MODEL_TYPE

    arch: str = "bilstm"
    vocab_size: int = 10000
    embedding_size: int | None = None
    num_layers: int | None = None
    num_heads: int = 4
    ffn_size: int = 1024
    max_position_embeddings: int = 512
    lstm_hidden: int = 256
    kernel_sizes: list[int] | None = None
    num_filters: int = 256
    pooling: str | None = None
    pooled_size: int | None = None
    dropout: float | None = None
    initializer_range: float = 0.02
    pad_token_id: int | None = 0

    def __post_init__(self, **kwargs: Any) -> None:
        if self.arch not in STUDENT_ARCHS:
            raise UsageError(f"student arch {self.arch!r}: choose from {', '.join(STUDENT_ARCHS)}")
        for key, value in ARCH_DEFAULTS[self.arch].items():
            if getattr(self, key) is None:
                setattr(self, key, value)
        if self.kernel_sizes is None:
            self.kernel_sizes = [3, 4, 5]
        self.kernel_sizes = [int(k) for k in self.kernel_sizes]
        if self.pooling not in POOLINGS[self.arch]:
            raise UsageError(f"student arch {self.arch}: pooling {self.pooling!r} is not one of {', '.join(POOLINGS[self.arch])}")
        if self.arch == "transformer" and self.embedding_size % self.num_heads:
            raise UsageError(f"transformer student: d_model {self.embedding_size} is not divisible by {self.num_heads} heads")
        super().__post_init__(**kwargs)

    @property
    def d_model(self) -> int:
        return int(self.embedding_size)

    @property
    def sentence_size(self) -> int:
        """Size of the encoder's sentence vector before any `pooled_size` projection."""
        if self.arch == "transformer":
            return int(self.embedding_size)
        if self.arch == "bilstm":
            return 2 * int(self.lstm_hidden)
        return len(self.kernel_sizes) * int(self.num_filters)

    @property
    def hidden_size(self) -> int:
        """Size of `.hidden`, the pooled sentence vector the head reads."""
        return int(self.pooled_size) if self.pooled_size else self.sentence_size


@dataclass
class StudentOutput(SequenceClassifierOutput):
    """`SequenceClassifierOutput` plus `hidden` [B, H]: the pooled sentence vector (always set)."""

    hidden: torch.FloatTensor | None = None


@dataclass
class TokenStudentOutput(TokenClassifierOutput):
    """`TokenClassifierOutput` plus `hidden` [B, T, H]: the vector of every position the
    classifier reads (always set)."""

    hidden: torch.FloatTensor | None = None


def _mask_of(attention_mask: torch.Tensor | None, shape: torch.Size, device: torch.device) -> torch.Tensor:
    if attention_mask is None:
        return torch.ones(shape, dtype=torch.bool, device=device)
    return attention_mask.to(device=device).bool()


class _Block(nn.Module):
    """Pre-LN transformer layer: x + MHA(LN(x)), then x + FFN(LN(x)) with GELU."""

    def __init__(self, d: int, heads: int, ffn: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.attn_norm = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.attn_out = nn.Linear(d, d)
        self.ffn_norm = nn.LayerNorm(d)
        self.ffn_in = nn.Linear(d, ffn)
        self.ffn_out = nn.Linear(ffn, d)
        self.dropout = nn.Dropout(dropout)
        self.p = dropout

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.attn_norm(x)).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        attn = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :],
                                              dropout_p=self.p if self.training else 0.0)
        x = x + self.dropout(self.attn_out(attn.transpose(1, 2).reshape(b, t, d)))
        return x + self.dropout(self.ffn_out(self.dropout(F.gelu(self.ffn_in(self.ffn_norm(x))))))


class _TransformerEncoder(nn.Module):
    def __init__(self, c: XltSmallConfig) -> None:
        super().__init__()
        self.pooling = c.pooling
        self.position_embeddings = nn.Embedding(c.max_position_embeddings, c.d_model)
        self.dropout = nn.Dropout(c.dropout)
        self.layers = nn.ModuleList(_Block(c.d_model, c.num_heads, c.ffn_size, c.dropout) for _ in range(c.num_layers))
        self.final_norm = nn.LayerNorm(c.d_model)

    def forward(self, embeds: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x, states = self.tokens(embeds, mask)
        if self.pooling == "cls":
            return x[:, 0], states
        m = mask.unsqueeze(-1).to(x.dtype)
        return (x * m).sum(1) / m.sum(1).clamp(min=1), states

    def tokens(self, embeds: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The final states [B, T, d_model] and every layer's."""
        t = embeds.shape[1]
        if t > self.position_embeddings.num_embeddings:
            raise UsageError(f"transformer student: {t} tokens exceed its {self.position_embeddings.num_embeddings} "
                             "positions; lower --max-length")
        x = self.dropout(embeds + self.position_embeddings(torch.arange(t, device=embeds.device))[None])
        states = [x]
        for layer in self.layers:
            x = layer(x, mask)
            states.append(x)
        x = self.final_norm(x)
        states[-1] = x
        return x, states


class _BiLSTMEncoder(nn.Module):
    def __init__(self, c: XltSmallConfig) -> None:
        super().__init__()
        self.dropout = nn.Dropout(c.dropout)
        self.lstm = nn.LSTM(c.embedding_size, c.lstm_hidden, num_layers=c.num_layers, bidirectional=True,
                            batch_first=True, dropout=c.dropout if c.num_layers > 1 else 0.0)

    def forward(self, embeds: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        out, h_n = self._run(embeds, mask)
        # h_n: [layers * 2, B, H]; the last two rows are the top layer's forward and backward final states.
        return torch.cat([h_n[-2], h_n[-1]], dim=-1), [embeds, out]

    def tokens(self, embeds: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The top layer's outputs [B, T, 2 * lstm_hidden] (zeros at padding)."""
        out, _ = self._run(embeds, mask)
        return out, [embeds, out]

    def _run(self, embeds: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lengths = mask.sum(1).clamp(min=1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(self.dropout(embeds), lengths, batch_first=True, enforce_sorted=False)
        out, (h_n, _) = self.lstm(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=embeds.shape[1])
        return out, h_n


class _CNNEncoder(nn.Module):
    def __init__(self, c: XltSmallConfig) -> None:
        super().__init__()
        self.kernel_sizes = list(c.kernel_sizes)
        self.convs = nn.ModuleList(nn.Conv1d(c.embedding_size, c.num_filters, k) for k in self.kernel_sizes)

    def forward(self, embeds: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x = (embeds * mask.unsqueeze(-1).to(embeds.dtype)).transpose(1, 2)  # [B, E, T], padding zeroed
        t = x.shape[-1]
        widest = max(self.kernel_sizes)
        if t < widest:  # a sentence shorter than a kernel still gets one (zero-padded) window
            x = F.pad(x, (0, widest - t))
        lengths = mask.sum(1)
        pooled = []
        for k, conv in zip(self.kernel_sizes, self.convs):
            h = F.relu(conv(x))  # [B, F, T' - k + 1]
            # Windows that start at p cover tokens p..p+k-1: keep those inside the sentence (at least p = 0).
            valid = torch.arange(h.shape[-1], device=h.device)[None] < (lengths - k + 1).clamp(min=1)[:, None]
            pooled.append(h.masked_fill(~valid[:, None, :], float("-inf")).max(dim=-1).values)
        return torch.cat(pooled, dim=-1), [embeds]

    def tokens(self, embeds: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Every filter applied around every position [B, T, kernels * filters]: the window of
        kernel size k covers (k - 1) // 2 tokens before and k // 2 after (padding reads zeros)."""
        x = (embeds * mask.unsqueeze(-1).to(embeds.dtype)).transpose(1, 2)  # [B, E, T], padding zeroed
        out = [F.relu(conv(F.pad(x, ((k - 1) // 2, k // 2)))) for k, conv in zip(self.kernel_sizes, self.convs)]
        return torch.cat(out, dim=1).transpose(1, 2), [embeds]


_ENCODERS = {"transformer": _TransformerEncoder, "bilstm": _BiLSTMEncoder, "cnn": _CNNEncoder}


class XltSmallPreTrainedModel(PreTrainedModel):
    config_class = XltSmallConfig
    base_model_prefix = "student"
    main_input_name = "input_ids"
    _no_split_modules = ["_Block"]

    def _init_weights(self, module: nn.Module) -> None:
        from transformers import initialization as init

        # The recurrent and convolutional students have no LayerNorm: they start from PyTorch's own
        # initialization (unit-variance embeddings, uniform +-1/sqrt(fan) LSTM and conv weights),
        # under which activations keep their scale; the library's std-0.02 default starves them.
        if isinstance(module, nn.Conv1d):
            bound = 1.0 / (module.in_channels * module.kernel_size[0]) ** 0.5
            init.uniform_(module.weight, -bound, bound)
            init.uniform_(module.bias, -bound, bound)
        elif isinstance(module, nn.LSTM):
            bound = 1.0 / module.hidden_size ** 0.5
            for param in module.parameters():
                init.uniform_(param, -bound, bound)
        elif isinstance(module, nn.Embedding) and self.config.arch != "transformer":
            init.normal_(module.weight, mean=0.0, std=1.0)
            # The slice below loses the "loaded" flag: only touch the padding row of fresh weights.
            if module.padding_idx is not None and not getattr(module.weight, "_is_hf_initialized", False):
                init.zeros_(module.weight[module.padding_idx])
        else:
            super()._init_weights(module)


class _XltSmallModel(XltSmallPreTrainedModel):
    """What the small student classifier and tagger share: word embeddings, the encoder of
    `config.arch`, the optional pooler, dropout and the output layer."""

    what = "classifier"

    def __init__(self, config: XltSmallConfig) -> None:
        super().__init__(config)
        if config.num_labels < 2:
            raise UsageError(f"a student {self.what} needs at least 2 labels, got {config.num_labels}")
        self.num_labels = config.num_labels
        self.word_embeddings = nn.Embedding(config.vocab_size, config.embedding_size, padding_idx=config.pad_token_id)
        self.encoder = _ENCODERS[config.arch](config)
        self.pooler = nn.Linear(config.sentence_size, config.pooled_size) if config.pooled_size else None
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.word_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.word_embeddings = value

    def _embed(self, input_ids: torch.Tensor | None, inputs_embeds: torch.Tensor | None,
               attention_mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The input embeddings and the padding mask (pairs are joined with [SEP]: the students have
        no segment embeddings)."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        embeds = self.word_embeddings(input_ids) if inputs_embeds is None else inputs_embeds
        return embeds, _mask_of(attention_mask, embeds.shape[:2], embeds.device)

    def _head(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(hidden, logits) of sentence or token features."""
        hidden = torch.tanh(self.pooler(features)) if self.pooler is not None else features
        return hidden, self.classifier(self.dropout(hidden))

    def _want_states(self, output_hidden_states: bool | None) -> bool:
        return output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states


class XltSmallForSequenceClassification(_XltSmallModel):
    """A small student classifier; see the module docstring for the architectures."""

    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, inputs_embeds: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, output_hidden_states: bool | None = None,
                return_dict: bool | None = None, **kwargs: Any) -> StudentOutput:
        """`hidden_states` (with output_hidden_states): token states — transformer: embeddings and
        each layer's output; bilstm: embeddings and the top layer's outputs; cnn: embeddings."""
        embeds, mask = self._embed(input_ids, inputs_embeds, attention_mask)
        sentence, states = self.encoder(embeds, mask)
        hidden, logits = self._head(sentence)
        loss = F.cross_entropy(logits.float(), labels.to(logits.device), ignore_index=-100) if labels is not None else None
        want_states = self._want_states(output_hidden_states)
        return StudentOutput(loss=loss, logits=logits, hidden_states=tuple(states) if want_states else None,
                             hidden=hidden)


class XltSmallForTokenClassification(_XltSmallModel):
    """A small student tagger: logits for every position (read at the first subword of each word,
    xlt.tagging); see the module docstring for the architectures."""

    what = "tagger"

    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, inputs_embeds: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, output_hidden_states: bool | None = None,
                return_dict: bool | None = None, **kwargs: Any) -> TokenStudentOutput:
        """`logits` [B, T, C]; `labels` [B, T] (-100: no loss) give the mean cross-entropy;
        `hidden_states` (with output_hidden_states): the encoder's token states, the last one
        `hidden` (what the classifier reads)."""
        embeds, mask = self._embed(input_ids, inputs_embeds, attention_mask)
        tokens, states = self.encoder.tokens(embeds, mask)
        hidden, logits = self._head(tokens)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), labels.to(logits.device).reshape(-1),
                                   ignore_index=-100)
        want_states = self._want_states(output_hidden_states)
        if want_states and states[-1] is not hidden:
            states = [*states, hidden]
        return TokenStudentOutput(loss=loss, logits=logits, hidden_states=tuple(states) if want_states else None,
                                  hidden=hidden)


def student_config(arch: str, *, vocab_size: int, labels: Sequence[str], pad_token_id: int,
                   max_position_embeddings: int = 512, **overrides: Any) -> XltSmallConfig:
    """The config of a fresh student: `labels` become num_labels/id2label/label2id."""
    labels = [str(x) for x in labels]
    return XltSmallConfig(arch=arch, vocab_size=vocab_size, pad_token_id=pad_token_id,
                          max_position_embeddings=max_position_embeddings,
                          id2label=dict(enumerate(labels)), label2id={x: i for i, x in enumerate(labels)},
                          **overrides)


def build_student(arch: str, *, vocab_size: int, labels: Sequence[str], pad_token_id: int,
                  max_position_embeddings: int = 512, tagging: bool = False,
                  **overrides: Any) -> XltSmallForSequenceClassification | XltSmallForTokenClassification:
    """A randomly initialized student (seed torch first for reproducible weights); with `tagging`
    a tagger (`labels` its tags)."""
    cls = XltSmallForTokenClassification if tagging else XltSmallForSequenceClassification
    return cls(student_config(arch, vocab_size=vocab_size, labels=labels, pad_token_id=pad_token_id,
                              max_position_embeddings=max_position_embeddings, **overrides))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def sentence_vector(output: Any) -> torch.Tensor:
    """The pooled sentence vector of a model output: a student's `.hidden`, else the first token of
    the last `hidden_states` (the [CLS]/<s> vector of a BERT/XLM-R teacher run with
    output_hidden_states=True). This is what the `hidden-kl` term compares."""
    hidden = getattr(output, "hidden", None)
    if hidden is not None:
        return hidden
    states = getattr(output, "hidden_states", None)
    if not states:
        raise UsageError("the model output has no hidden states; call the teacher with output_hidden_states=True")
    return states[-1][:, 0]


def token_vectors(output: Any) -> torch.Tensor:
    """The vector of every position [B, T, H] of a token classifier's output: a small tagger's
    `.hidden`, else the last `hidden_states` (run with output_hidden_states=True): what a tagger
    teacher's per-word `hidden` holds at each word's first subword (xlt.tagging.model)."""
    hidden = getattr(output, "hidden", None)
    if hidden is not None and hidden.ndim == 3:
        return hidden
    states = getattr(output, "hidden_states", None)
    if not states:
        raise UsageError("the model output has no hidden states; call the model with output_hidden_states=True")
    return states[-1]


AutoConfig.register(MODEL_TYPE, XltSmallConfig, exist_ok=True)
AutoModelForSequenceClassification.register(XltSmallConfig, XltSmallForSequenceClassification, exist_ok=True)
AutoModelForTokenClassification.register(XltSmallConfig, XltSmallForTokenClassification, exist_ok=True)
