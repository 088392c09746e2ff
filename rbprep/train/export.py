"""A trained model as a Hugging Face directory: ``export_hf`` writes config.json,
model.safetensors and the dataset's tokenizer, which ``RobertaForMaskedLM.from_pretrained``
and ``pipeline("fill-mask")`` load as they are; ``load_model`` reads one back (or a run,
or a checkpoint) as this package's model."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

from safetensors.torch import load_file, save_file

from rbprep.dataset.format import as_location
from rbprep.dataset.reader import read_manifest
from rbprep.errors import RbprepError
from rbprep.storage import Location
from rbprep.tokenizer_files import write_transformers_configs
from rbprep.train.model import ModelConfig, RobertaMLM


def export_hf(model: RobertaMLM, directory: Path, data_root: Location | str | Path) -> None:
    """Write ``model`` and the tokenizer of the dataset at ``data_root`` to ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    config = model.config
    manifest = read_manifest(data_root)
    tokenizer = manifest.tokenizer
    seq_len = manifest.parameters.seq_len
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
        "pad_token_id": tokenizer.pad_id,
        "bos_token_id": tokenizer.cls_id,
        "eos_token_id": tokenizer.sep_id,
        "tie_word_embeddings": True,
    }
    (directory / "config.json").write_text(json.dumps(hf_config, indent=2) + "\n")
    weights = {
        name: tensor.detach().cpu().contiguous() for name, tensor in model.hf_state_dict().items()
    }
    save_file(weights, str(directory / "model.safetensors"), metadata={"format": "pt"})
    tokenizer_json = directory / "tokenizer.json"
    tokenizer_json.write_bytes(as_location(data_root).child(tokenizer.file).read_bytes())
    _write_tokenizer_configs(directory, tokenizer_json, asdict(tokenizer), seq_len)


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


def load_model(path: str | os.PathLike) -> RobertaMLM:
    """The model at ``path``, in eval mode on the CPU: a run directory (its latest
    checkpoint, else its ``hf/`` export), a checkpoint (``checkpoints/step-N`` or its
    ``trainer.pt``) or a Hugging Face RoBERTa directory (``hf/``, or any
    ``RobertaForMaskedLM`` saved with safetensors).

    ``model(input_ids, attention_mask, document_ids=None)`` returns the MLM logits
    (n, seq_len, vocab); ``document_ids`` (from ``Dataset.batch``) keep attention and
    position ids within each document of a row."""
    directory = _model_directory(Path(path))
    config_path, weights_path = directory / "config.json", directory / "model.safetensors"
    if not weights_path.is_file():
        raise RbprepError(f"{directory}: no model.safetensors; give a run, a checkpoint or hf/")
    try:
        hf = json.loads(config_path.read_text())
    except (OSError, ValueError) as exc:
        raise RbprepError(f"{config_path}: missing or not JSON ({exc})") from exc
    model = RobertaMLM(_model_config(hf, config_path))
    try:
        weights = load_file(str(weights_path))
    except Exception as exc:  # safetensors raises its own error types
        raise RbprepError(f"{weights_path}: not readable ({str(exc)[:120]})") from exc
    names = set(model.hf_state_dict())  # the tied decoder is not among them
    weights = {name: tensor for name, tensor in weights.items() if name in names}
    missing = names - set(weights)
    if missing:
        raise RbprepError(
            f"{weights_path}: not a RobertaForMaskedLM of this shape ({len(missing)} weights "
            f"missing, e.g. {sorted(missing)[0]})"
        )
    try:
        model.load_state_dict(weights, strict=False)
    except RuntimeError as exc:
        said = str(exc).splitlines()[-1].strip()[:160]
        raise RbprepError(f"{weights_path}: weights do not fit its config.json ({said})") from exc
    return model.eval()


def _model_directory(path: Path) -> Path:
    """The directory of model files that ``path`` (run, checkpoint, trainer.pt or hf/)
    stands for."""
    if path.is_file() and path.name == "trainer.pt":
        path = path.parent  # a checkpoint holds its Hugging Face files beside trainer.pt
    if not path.is_dir():
        raise RbprepError(f"{path}: no such run, checkpoint or model directory")
    if (path / "model.safetensors").is_file():
        return path
    latest = path / "checkpoints" / "latest"
    if latest.is_file() and (path / "checkpoints" / latest.read_text().strip()).is_dir():
        return path / "checkpoints" / latest.read_text().strip()
    if (path / "hf" / "model.safetensors").is_file():
        return path / "hf"
    raise RbprepError(f"{path}: neither a model directory nor a run with a checkpoint")


def _model_config(hf: dict, config_path: Path) -> ModelConfig:
    """Our ModelConfig from a Hugging Face RoBERTa config.json (refusing what this
    model does not implement)."""
    unsupported = {
        "model_type": (hf.get("model_type"), "roberta"),
        "hidden_act": (hf.get("hidden_act", "gelu"), "gelu"),
        "type_vocab_size": (hf.get("type_vocab_size", 1), 1),
        "position_embedding_type": (hf.get("position_embedding_type", "absolute"), "absolute"),
    }
    for key, (value, wanted) in unsupported.items():
        if value != wanted:
            raise RbprepError(f"{config_path}: {key} {value!r}; this model needs {wanted!r}")
    try:
        return ModelConfig(
            vocab_size=int(hf["vocab_size"]),
            pad_id=int(hf.get("pad_token_id", 1)),
            layers=int(hf["num_hidden_layers"]),
            hidden=int(hf["hidden_size"]),
            heads=int(hf["num_attention_heads"]),
            ffn=int(hf["intermediate_size"]),
            max_positions=int(hf["max_position_embeddings"]),
            dropout=float(hf.get("hidden_dropout_prob", 0.1)),
            layer_norm_eps=float(hf.get("layer_norm_eps", 1e-5)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise RbprepError(f"{config_path}: not a RoBERTa config ({exc!r} missing or bad)") from exc
