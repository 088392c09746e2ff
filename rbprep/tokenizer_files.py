"""The files beside a ``tokenizer.json`` that let ``transformers`` load a tokenizer
directory as RoBERTa's or BERT's: written by train-vocab and by the trainer's export."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

MODEL_MAX_LENGTH = 512


def write_transformers_configs(
    directory: Path,
    kind: str,
    specials: dict[str, str | None],
    *,
    lowercase: bool,
    model_max_length: int = MODEL_MAX_LENGTH,
    model_input_names: list[str] | None = None,
) -> None:
    """Write tokenizer_config.json and special_tokens_map.json so that
    ``transformers.AutoTokenizer`` loads ``directory`` as a RoBERTa (``kind`` "bpe") or
    BERT ("wordpiece") tokenizer. ``specials`` maps roles (cls, sep, pad, mask, unk) to
    token strings. transformers rebuilds the pipeline from these keys, so they must
    mirror tokenizer.json exactly (no prefix space; BERT's lowercasing)."""
    named = {
        "cls_token": specials["cls"],
        "sep_token": specials["sep"],
        "pad_token": specials["pad"],
        "mask_token": specials["mask"],
        "unk_token": specials.get("unk"),
    }
    if kind == "bpe":
        named = {"bos_token": specials["cls"], "eos_token": specials["sep"], **named}
        tokenizer_config: dict[str, Any] = {
            "tokenizer_class": "RobertaTokenizer",
            "add_prefix_space": False,
            "trim_offsets": True,
            "errors": "replace",
        }
    else:
        tokenizer_config = {
            "tokenizer_class": "BertTokenizer",
            "do_lower_case": lowercase,
            "tokenize_chinese_chars": True,
            "strip_accents": None,
        }
    special_map = {key: value for key, value in named.items() if value is not None}
    tokenizer_config.update(special_map)
    tokenizer_config["model_max_length"] = model_max_length
    tokenizer_config["clean_up_tokenization_spaces"] = False
    if model_input_names is not None:  # e.g. no token_type_ids for a one-segment model
        tokenizer_config["model_input_names"] = model_input_names
    (directory / "special_tokens_map.json").write_text(json.dumps(special_map, indent=2) + "\n")
    (directory / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2) + "\n")
