"""Write a trained model as a Hugging Face directory: config.json, model.safetensors and
the dataset's tokenizer, which ``RobertaForMaskedLM.from_pretrained`` and
``pipeline("fill-mask")`` load as they are."""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import save_file

from rbprep.dataset.format import as_location
from rbprep.dataset.reader import read_manifest
from rbprep.storage import Location
from rbprep.tokenizer_files import write_transformers_configs
from rbprep.train.model import RobertaMLM


def export_hf(model: RobertaMLM, directory: Path, data_root: Location | str | Path) -> None:
    """Write ``model`` and the tokenizer of the dataset at ``data_root`` to ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    config = model.config
    manifest = read_manifest(data_root)
    tokenizer = manifest["tokenizer"]
    seq_len = manifest["parameters"]["seq_len"]
    hf_config = {
        "architectures": ["RobertaForMaskedLM"],
        "model_type": "roberta",
        "vocab_size": config.vocab_size,
        "hidden_size": config.hidden,
        "num_hidden_layers": config.layers,
        "num_attention_heads": config.heads,
        "intermediate_size": config.ffn,
        "hidden_act": "gelu",
        "hidden_dropout_prob": config.dropout,
        "attention_probs_dropout_prob": config.dropout,
        "max_position_embeddings": config.max_positions,
        "type_vocab_size": 1,
        "initializer_range": 0.02,
        "layer_norm_eps": config.layer_norm_eps,
        "pad_token_id": tokenizer["pad_id"],
        "bos_token_id": tokenizer["cls_id"],
        "eos_token_id": tokenizer["sep_id"],
        "tie_word_embeddings": True,
    }
    (directory / "config.json").write_text(json.dumps(hf_config, indent=2) + "\n")
    weights = {
        name: tensor.detach().cpu().contiguous() for name, tensor in model.hf_state_dict().items()
    }
    save_file(weights, str(directory / "model.safetensors"), metadata={"format": "pt"})
    tokenizer_json = directory / "tokenizer.json"
    tokenizer_json.write_bytes(as_location(data_root).child(tokenizer["file"]).read_bytes())
    _write_tokenizer_configs(directory, tokenizer_json, tokenizer, seq_len)


def _write_tokenizer_configs(
    directory: Path, tokenizer_json: Path, roles: dict, model_max_length: int
) -> None:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_json))
    specials = {
        role: tokenizer.id_to_token(roles[f"{role}_id"])
        if roles.get(f"{role}_id") is not None
        else None
        for role in ("cls", "sep", "pad", "mask", "unk")
    }
    normalizer = json.loads(tokenizer_json.read_text()).get("normalizer") or {}
    write_transformers_configs(
        directory,
        "wordpiece" if roles.get("continuation_prefix") else "bpe",
        specials,
        lowercase=bool(normalizer.get("lowercase", False)),
        model_max_length=model_max_length,
        # One token type: a BERT tokenizer's segment ids (1 for a pair's second text)
        # would index past the model's table.
        model_input_names=["input_ids", "attention_mask"],
    )
