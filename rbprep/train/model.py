"""A compact RoBERTa encoder for masked-LM pretraining, readable in one sitting.

Parameter names and shapes match ``transformers``' ``RobertaForMaskedLM`` (so a
state dict exports as it is), built bottom-up: embeddings, self-attention with
``scaled_dot_product_attention`` and a padding mask, the feed-forward block, the
encoder, and the MLM head, which is computed only at the masked positions.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


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


class Embeddings(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.pad_id = config.pad_id
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden, config.pad_id)
        self.position_embeddings = nn.Embedding(config.max_positions, config.hidden, config.pad_id)
        self.token_type_embeddings = nn.Embedding(1, config.hidden)
        self.LayerNorm = nn.LayerNorm(config.hidden, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        # RoBERTa numbers real tokens from pad_id + 1; padding sits at pad_id.
        positions = torch.cumsum(attention_mask, dim=1) * attention_mask + self.pad_id
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

    def forward(self, x: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
        batch, length, hidden = x.shape

        def split(t: torch.Tensor) -> torch.Tensor:  # (B, T, H) -> (B, heads, T, H/heads)
            return t.view(batch, length, self.heads, hidden // self.heads).transpose(1, 2)

        y = F.scaled_dot_product_attention(
            split(self.query(x)),
            split(self.key(x)),
            split(self.value(x)),
            attn_mask=padding,
            dropout_p=self.dropout if self.training else 0.0,
        )
        return y.transpose(1, 2).reshape(batch, length, hidden)


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

    def forward(self, x: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
        return self.output(self.self(x, padding), x)


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

    def forward(self, x: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
        x = self.attention(x, padding)
        return self.output(self.intermediate(x), x)


class Encoder(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.layer = nn.ModuleList(Layer(config) for _ in range(config.layers))

    def forward(self, x: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
        for layer in self.layer:
            x = layer(x, padding)
        return x


class Roberta(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.embeddings = Embeddings(config)
        self.encoder = Encoder(config)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        # (B, 1, 1, T) bool: True where a key may be attended to.
        padding = attention_mask.bool()[:, None, None, :]
        return self.encoder(self.embeddings(input_ids, attention_mask), padding)


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
    """RoBERTa with its masked-LM head; ``forward`` returns the mean loss over the
    masked positions (labels != -100), computing the head only there."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.roberta = Roberta(config)
        self.lm_head = LMHead(config, self.roberta.embeddings.word_embeddings)
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
        labels: torch.Tensor,
        reduction: str = "mean",
    ) -> torch.Tensor:
        """The loss over the masked positions: their mean, or with ``reduction="sum"``
        their sum (0 where nothing is masked)."""
        hidden = self.roberta(input_ids, attention_mask)
        chosen = labels != -100
        logits = self.lm_head(hidden[chosen])  # (masked, vocab): the head only where needed
        return F.cross_entropy(logits.float(), labels[chosen], reduction=reduction)

    def logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Logits at every position (B, T, vocab), for checks and inference."""
        return self.lm_head(self.roberta(input_ids, attention_mask))

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
