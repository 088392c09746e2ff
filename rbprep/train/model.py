"""A compact RoBERTa encoder for masked-LM pretraining, readable in one sitting.

Parameter names and shapes match ``transformers``' ``RobertaForMaskedLM`` (so a
state dict exports as it is), built bottom-up: embeddings, self-attention, the
feed-forward block, the encoder, and the MLM head, which is computed only at the masked
positions.

Attention comes in two shapes. Padded: (batch, seq_len) rows through
``scaled_dot_product_attention`` with a mask, over the whole row (RoBERTa's) or, given
``document_ids``, block-diagonal within each document. Packed: given ``document_ids``
on CUDA under autocast, the padding is dropped and every document of every row is one
variable-length sequence (``flash_attn_varlen_func`` when flash-attn is installed, else
PyTorch's ``varlen_attn``), so a row costs its real length. With ``document_ids`` the
position ids restart at each document (RoBERTa's ``pad_id + 1 + offset``), so every
document is encoded exactly as it would be alone.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

logger = logging.getLogger("rbprep")


@dataclass(frozen=True)
class ModelConfig:
    """The encoder's shape. ``vocab_size`` and ``pad_id`` come from the dataset."""

    vocab_size: int
    pad_id: int = 1
    layers: int = 12
    hidden: int = 768
    heads: int = 12
    ffn: int = 3072
    max_positions: int = 514  # RoBERTa counts positions from pad_id + 1
    dropout: float = 0.1
    layer_norm_eps: float = 1e-5

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def encoder_parameters(self) -> int:
        """Parameters of the encoder layers (no embeddings, no head): N_enc for MFU."""
        attention = 4 * (self.hidden * self.hidden + self.hidden)
        feed_forward = 2 * self.hidden * self.ffn + self.ffn + self.hidden
        layer_norms = 2 * 2 * self.hidden
        return self.layers * (attention + feed_forward + layer_norms)


# name -> (layers, hidden, heads, ffn); base and large are RoBERTa's.
PRESETS = {
    "tiny": (2, 128, 2, 512),
    "small": (4, 256, 4, 1024),
    "base": (12, 768, 12, 3072),
    "large": (24, 1024, 16, 4096),
}


def preset(name: str, vocab_size: int, pad_id: int, seq_len: int) -> ModelConfig:
    layers, hidden, heads, ffn = PRESETS[name]
    return ModelConfig(
        vocab_size=vocab_size,
        pad_id=pad_id,
        layers=layers,
        hidden=hidden,
        heads=heads,
        ffn=ffn,
        max_positions=seq_len + pad_id + 1,
    )


def position_ids(
    attention_mask: torch.Tensor, document_ids: torch.Tensor | None, pad_id: int
) -> torch.Tensor:
    """RoBERTa's position ids (B, T): real tokens numbered from ``pad_id + 1`` from the
    row's start, or from each document's start where ``document_ids`` are given;
    ``pad_id`` on padding."""
    if document_ids is None:
        return torch.cumsum(attention_mask, dim=1) * attention_mask + pad_id
    index = torch.arange(document_ids.shape[1], device=document_ids.device).expand_as(document_ids)
    starts = torch.ones_like(document_ids, dtype=torch.bool)  # (B, T): a document begins
    starts[:, 1:] = document_ids[:, 1:] != document_ids[:, :-1]
    first = torch.where(starts, index, 0).cummax(dim=1).values  # its document's first
    return torch.where(attention_mask.bool(), index - first + pad_id + 1, pad_id)


class Padded(NamedTuple):
    """Attention over padded rows: ``mask`` (B, 1, 1 or T, T) bool, True where a query
    may attend a key."""

    mask: torch.Tensor


class Packed(NamedTuple):
    """Attention over packed tokens (N, ...), one sequence per document of each row:
    ``cu_seqlens`` (sequences + 1,) int32 their bounds, ``max_len`` a bound on their
    lengths, ``sequence_of`` (N,) each token's sequence (for the reference kernel)."""

    cu_seqlens: torch.Tensor
    max_len: int
    sequence_of: torch.Tensor


@functools.cache
def varlen_kernel() -> tuple[str, Any] | None:
    """The variable-length attention kernel this install has: ("flash-attn",
    flash_attn_varlen_func), else ("torch", varlen_attn) on torch 2.10 or later, else
    None (document attention then runs padded, with a block-diagonal mask)."""
    try:
        from flash_attn import flash_attn_varlen_func

        return "flash-attn", flash_attn_varlen_func
    except ImportError:
        pass
    try:
        from torch.nn.attention.varlen import varlen_attn

        return "torch", varlen_attn
    except ImportError:
        return None


_WARNED: set[str] = set()


def _warn_once(key: str, message: str) -> None:
    if key not in _WARNED:
        _WARNED.add(key)
        logger.warning(message)


def varlen_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, packed: Packed, dropout_p: float
) -> torch.Tensor:
    """Attention within each packed sequence; q, k, v and the result (N, heads, d).

    On CUDA in half precision: flash-attn's kernel where installed, else PyTorch's
    ``varlen_attn`` (torch 2.10 or later; it has no attention dropout: it is left out,
    with a warning). Elsewhere the reference: SDPA over all N tokens with a block-diagonal mask, for
    CPU checks of the packed path (memory N^2)."""
    kernel = varlen_kernel()
    if q.is_cuda and q.dtype in (torch.float16, torch.bfloat16) and kernel is not None:
        name, attend = kernel
        cu, bound = packed.cu_seqlens, packed.max_len
        if name == "flash-attn":
            return attend(q, k, v, cu, cu, bound, bound, dropout_p=dropout_p)
        if dropout_p:
            _warn_once(
                "varlen-dropout",
                "document attention on torch's varlen_attn has no attention dropout; "
                "pip install flash-attn for it",
            )
        return attend(q, k, v, cu, cu, bound, bound)
    same = packed.sequence_of[:, None] == packed.sequence_of[None, :]  # (N, N)
    y = F.scaled_dot_product_attention(
        q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1), attn_mask=same, dropout_p=dropout_p
    )  # (heads, N, d)
    return y.transpose(0, 1)


class Embeddings(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden, config.pad_id)
        self.position_embeddings = nn.Embedding(config.max_positions, config.hidden, config.pad_id)
        self.token_type_embeddings = nn.Embedding(1, config.hidden)
        self.LayerNorm = nn.LayerNorm(config.hidden, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        x = (
            self.word_embeddings(input_ids)
            + self.position_embeddings(positions)
            + self.token_type_embeddings.weight[0]
        )
        return self.dropout(self.LayerNorm(x))


class SelfAttention(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.heads = config.heads
        self.query = nn.Linear(config.hidden, config.hidden)
        self.key = nn.Linear(config.hidden, config.hidden)
        self.value = nn.Linear(config.hidden, config.hidden)
        self.dropout = config.dropout

    def forward(self, x: torch.Tensor, attend: Padded | Packed) -> torch.Tensor:
        dropout_p = self.dropout if self.training else 0.0
        hidden = x.shape[-1]
        if isinstance(attend, Packed):  # (N, H) -> (N, heads, H/heads)
            q, k, v = (t.view(-1, self.heads, hidden // self.heads) for t in self._qkv(x))
            return varlen_attention(q, k, v, attend, dropout_p).reshape(x.shape)
        batch, length, _ = x.shape

        def split(t: torch.Tensor) -> torch.Tensor:  # (B, T, H) -> (B, heads, T, H/heads)
            return t.view(batch, length, self.heads, hidden // self.heads).transpose(1, 2)

        q, k, v = (split(t) for t in self._qkv(x))
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attend.mask, dropout_p=dropout_p)
        return y.transpose(1, 2).reshape(batch, length, hidden)

    def _qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.query(x), self.key(x), self.value(x)


class AttentionOutput(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden, config.hidden)
        self.LayerNorm = nn.LayerNorm(config.hidden, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(x + self.dropout(self.dense(y)))


class Attention(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.self = SelfAttention(config)
        self.output = AttentionOutput(config)

    def forward(self, x: torch.Tensor, attend: Padded | Packed) -> torch.Tensor:
        return self.output(self.self(x, attend), x)


class Intermediate(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden, config.ffn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.dense(x))


class Output(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.dense = nn.Linear(config.ffn, config.hidden)
        self.LayerNorm = nn.LayerNorm(config.hidden, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(x + self.dropout(self.dense(h)))


class Layer(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.attention = Attention(config)
        self.intermediate = Intermediate(config)
        self.output = Output(config)

    def forward(self, x: torch.Tensor, attend: Padded | Packed) -> torch.Tensor:
        x = self.attention(x, attend)
        return self.output(self.intermediate(x), x)


class Encoder(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.layer = nn.ModuleList(Layer(config) for _ in range(config.layers))

    def forward(self, x: torch.Tensor, attend: Padded | Packed) -> torch.Tensor:
        for layer in self.layer:
            x = layer(x, attend)
        return x


class Roberta(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.pad_id = config.pad_id
        self.embeddings = Embeddings(config)
        self.encoder = Encoder(config)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        document_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Hidden states (B, T, H) of padded rows: attending over each row's real
        tokens, or (``document_ids`` given) within each document only."""
        positions = position_ids(attention_mask, document_ids, self.pad_id)
        if document_ids is None:
            mask = attention_mask.bool()[:, None, None, :]  # (B, 1, 1, T): real keys
        else:  # (B, 1, T, T): same document (padding attends padding: no empty row)
            mask = (document_ids[:, :, None] == document_ids[:, None, :])[:, None]
        return self.encoder(self.embeddings(input_ids, positions), Padded(mask))

    def packed(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, document_ids: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Hidden states (N, H) of the N real tokens, padding dropped, each document of
        each row attended as its own sequence; and their flat indices (N,) in (B*T)."""
        length = input_ids.shape[1]
        kept = attention_mask.reshape(-1).nonzero().squeeze(1)  # (N,)
        positions = position_ids(attention_mask, document_ids, self.pad_id).reshape(-1)[kept]
        rows, documents = kept // length, document_ids.reshape(-1)[kept]
        begins = torch.ones_like(kept, dtype=torch.bool)  # (N,): a sequence begins here
        begins[1:] = (rows[1:] != rows[:-1]) | (documents[1:] != documents[:-1])
        bounds = torch.cat([begins.nonzero().squeeze(1), kept.new_tensor([len(kept)])])
        attend = Packed(bounds.to(torch.int32), length, torch.cumsum(begins, 0) - 1)
        x = self.embeddings(input_ids.reshape(-1)[kept], positions)
        return self.encoder(x, attend), kept


class LMHead(nn.Module):
    def __init__(self, config: ModelConfig, word_embeddings: nn.Embedding):
        super().__init__()
        self.dense = nn.Linear(config.hidden, config.hidden)
        self.layer_norm = nn.LayerNorm(config.hidden, eps=config.layer_norm_eps)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))
        self.decoder_weight = word_embeddings.weight  # tied, as in RoBERTa

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = self.layer_norm(F.gelu(self.dense(h)))
        return F.linear(h, self.decoder_weight, self.bias)


class RobertaMLM(nn.Module):
    """RoBERTa with its masked-LM head.

    ``forward(input_ids, attention_mask, document_ids=None)`` returns the logits
    (B, T, vocab); with ``labels`` the loss over the masked positions (labels != -100)
    instead, computing the head only there. ``document_ids`` (B, T), as
    ``Dataset.batch`` gives them, keep attention and position ids within each document
    of a row. ``packed`` chooses how: None (the default) drops the padding on CUDA under
    autocast and masks padded rows elsewhere; True or False forces one (both give the
    same results).
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.roberta = Roberta(config)
        self.lm_head = LMHead(config, self.roberta.embeddings.word_embeddings)
        self.packed: bool | None = None
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        # BERT's initialisation: N(0, 0.02) weights, zero biases, unit LayerNorms.
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
        if isinstance(module, nn.Embedding) and module.padding_idx is not None:
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()
        if isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        document_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        reduction: str = "mean",
    ) -> torch.Tensor:
        """Logits (B, T, vocab), or given ``labels`` the loss over the masked positions:
        their mean, or with ``reduction="sum"`` their sum (0 where nothing is masked).
        Packed, the logits at padding are 0."""
        if document_ids is not None and self._packs(input_ids):
            hidden, kept = self.roberta.packed(input_ids, attention_mask, document_ids)
            if labels is None:
                logits = self.lm_head(hidden)  # (N, vocab)
                full = logits.new_zeros(input_ids.numel(), logits.shape[-1])
                return full.index_copy(0, kept, logits).view(*input_ids.shape, -1)
            labels = labels.reshape(-1)[kept]  # (N,): as the hidden states
        else:
            hidden = self.roberta(input_ids, attention_mask, document_ids)
            if labels is None:
                return self.lm_head(hidden)
        chosen = labels != -100
        logits = self.lm_head(hidden[chosen])  # (masked, vocab): the head only where needed
        return F.cross_entropy(logits.float(), labels[chosen], reduction=reduction)

    def _packs(self, input_ids: torch.Tensor) -> bool:
        if self.packed is not None:
            return self.packed
        if not (input_ids.is_cuda and torch.is_autocast_enabled(input_ids.device.type)):
            return False
        if varlen_kernel() is None:
            _warn_once(
                "no-varlen",
                "no variable-length attention kernel (flash-attn, or torch 2.10 or later): "
                "document attention runs padded, with a block-diagonal mask",
            )
            return False
        return True

    def hf_state_dict(self) -> dict[str, torch.Tensor]:
        """The weights under RobertaForMaskedLM's names (tied decoder written once)."""
        return {k: v for k, v in self.state_dict().items() if k != "lm_head.decoder_weight"}


def flops_per_token(config: ModelConfig, attended_length: float, mask_share: float) -> float:
    """Training FLOPs per real token, as DESIGN §8 counts them for MFU:
    6 N_enc + 12 L H T + 6 p (H^2 + H V), the last term the MLM head at the masked
    share p of positions only (its dense layer and the tied decoder)."""
    hidden, vocab = config.hidden, config.vocab_size
    return (
        6 * config.encoder_parameters
        + 12 * config.layers * hidden * attended_length
        + 6 * mask_share * (hidden * hidden + hidden * vocab)
    )


def decay_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW parameter groups: matrices decay, biases and LayerNorm weights do not."""
    decay, no_decay = [], []
    for _, parameter in model.named_parameters():
        (decay if parameter.dim() >= 2 else no_decay).append(parameter)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
