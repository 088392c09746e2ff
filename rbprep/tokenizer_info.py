"""Load a tokenizer for ``shard`` and find its special tokens by role, not by spelling.

A tokenizer is a ``tokenizer.json`` or a directory holding one (the output of
``train-vocab``, or a Hugging Face tokenizer directory). Roles come from the
directory's ``tokenizer_config.json`` / ``special_tokens_map.json`` where present, else
from the usual spellings of RoBERTa's and BERT's specials among the tokenizer's added
special tokens.
"""

from __future__ import annotations

import hashlib
import json
import os
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from types import MappingProxyType
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from rbprep.encoding.units import line_break_id
from rbprep.errors import RbprepError
from rbprep.storage import Location

# role -> spellings tried in order when no config names the role
_ROLE_SPELLINGS = {
    "cls": ("<s>", "[CLS]", "<cls>"),
    "sep": ("</s>", "[SEP]", "<sep>"),
    "pad": ("<pad>", "[PAD]"),
    "mask": ("<mask>", "[MASK]"),
    "unk": ("<unk>", "[UNK]"),
}
_CONFIG_KEYS = {
    "cls": ("cls_token", "bos_token"),
    "sep": ("sep_token", "eos_token"),
    "pad": ("pad_token",),
    "mask": ("mask_token",),
    "unk": ("unk_token",),
}


@dataclass(frozen=True)
class TokenizerInfo:
    """What the packer and the masker need to know about a tokenizer."""

    path: str  # the tokenizer.json read
    sha256: str
    vocab_size: int  # ids are below this (id_space: the vocabulary's size, unless ids skip)
    cls_id: int  # starts a row: <s> or [CLS]
    sep_id: int  # ends a row and separates documents: </s> or [SEP]
    pad_id: int
    mask_id: int
    unk_id: int | None
    special_ids: tuple[int, ...]  # never masked, never drawn as a replacement
    word_prefix: str | None  # "Ġ"/"▁": a piece starting with it starts a word
    continuation_prefix: str | None  # "##": a piece starting with it continues one
    # The id of a lone "\n" where lines may be encoded joined by "\n" (see line_break_id)
    line_break_id: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def special_mask(self) -> np.ndarray:
        special = np.zeros(self.vocab_size, dtype=np.bool_)  # (vocab,) bool
        special[list(self.special_ids)] = True
        return special


_vocabularies: weakref.WeakKeyDictionary[Tokenizer, Mapping[str, int]] = weakref.WeakKeyDictionary()


def vocabulary(tokenizer: Tokenizer) -> Mapping[str, int]:
    """``tokenizer.get_vocab(with_added_tokens=True)``, read-only, made once per tokenizer
    object: a 50K vocabulary takes 25 ms to make, and a run's start-up asks twice."""
    vocab = _vocabularies.get(tokenizer)
    if vocab is None:
        vocab = MappingProxyType(tokenizer.get_vocab(with_added_tokens=True))
        _vocabularies[tokenizer] = vocab
    return vocab


def id_space(tokenizer: Tokenizer) -> int:
    """One more than the largest id: the size of anything indexed by id. The vocabulary's
    size where ids run without gaps; a tokenizer.json may skip ids (an added token placed
    far above its model's vocabulary), and ``get_vocab_size`` then counts fewer."""
    return max(vocabulary(tokenizer).values(), default=-1) + 1


def replacement_ids(
    vocab: Mapping[str, int], vocab_size: int, special_ids: Sequence[int]
) -> np.ndarray:
    """Every id that names a token, but the specials (uint32): what a masked position
    may be replaced by at random (an id no token has never is)."""
    drawn = np.zeros(vocab_size, dtype=np.bool_)  # (vocab,) bool
    drawn[list(vocab.values())] = True
    drawn[list(special_ids)] = False
    return np.flatnonzero(drawn).astype(np.uint32)


def word_start_table(
    vocab: Mapping[str, int], vocab_size: int, word_prefix: str | None, continuation: str | None
) -> np.ndarray:
    """A bool per id: True where the piece starts a word ("Ġ"/"▁"-style: it carries the
    word prefix; "##"-style: it lacks the continuation prefix; otherwise every piece)."""
    starts = np.ones(vocab_size, dtype=np.bool_)  # (vocab,) bool
    if continuation or word_prefix:
        for token, index in vocab.items():
            starts[index] = (
                not token.startswith(continuation)
                if continuation
                else token.startswith(word_prefix)
            )
    return starts


def tokenizer_file(path: str | os.PathLike) -> Location:
    """The tokenizer.json that ``path`` names (the file, or a directory holding one; a
    local path or a URI, see ``rbprep.storage``)."""
    location = Location(path)
    candidate = location.child("tokenizer.json") if location.kind() == "directory" else location
    if candidate.kind() != "file":
        raise RbprepError(
            f"{path}: no tokenizer.json there; give a tokenizer directory from "
            "`rbprep train-vocab` (e.g. vocab/bpe) or a tokenizer.json file"
        )
    return candidate


def encoding_tokenizer(file: Location, data: bytes | None = None, config: Any = None) -> Tokenizer:
    """The tokenizer.json ``file`` (``data``: its bytes, if read; ``config``: those bytes
    parsed, if parsed) set up to encode a corpus: text that spells a special token
    (``<mask>``, ``[SEP]``) is ordinary text; truncation, padding and BPE dropout saved
    in the file are off, so every unit is encoded whole, nothing added, the same way
    every time."""
    data = file.read_bytes() if data is None else data
    try:
        text = data.decode("utf-8")
        config = json.loads(text) if config is None else config
        if isinstance(config.get("model"), dict) and config["model"].get("dropout"):
            text = json.dumps({**config, "model": {**config["model"], "dropout": None}})
        tokenizer = Tokenizer.from_str(text)
    except Exception as exc:  # tokenizers raises plain Exception for bad files
        raise RbprepError(f"{file}: not a tokenizers tokenizer.json ({exc})") from exc
    tokenizer.encode_special_tokens = True
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


def load_tokenizer(
    path: str | os.PathLike, data: bytes | None = None, config: Any = None
) -> tuple[Tokenizer, TokenizerInfo]:
    """Load the tokenizer at ``path`` for packing, with specials found by role.

    ``data`` and ``config``: the tokenizer.json's bytes and those bytes parsed, where the
    caller has them (a 50K vocabulary takes 40 ms to parse). The returned tokenizer is
    ``encoding_tokenizer``'s.
    """
    file = tokenizer_file(path)
    data = file.read_bytes() if data is None else data
    try:
        config = json.loads(data) if config is None else config
    except ValueError as exc:
        raise RbprepError(f"{file}: not a tokenizers tokenizer.json ({exc})") from exc
    tokenizer = encoding_tokenizer(file, data, config)
    configured = _configured_tokens(file.parent)
    specials = {
        token.content: index
        for index, token in tokenizer.get_added_tokens_decoder().items()
        if token.special
    }
    roles: dict[str, int | None] = {}
    for role, spellings in _ROLE_SPELLINGS.items():
        names = [configured[key] for key in _CONFIG_KEYS[role] if configured.get(key)]
        roles[role] = next(
            (
                tokenizer.token_to_id(name)
                for name in [*names, *spellings]
                if tokenizer.token_to_id(name) is not None
            ),
            None,
        )
    missing = [role for role in ("cls", "sep", "pad", "mask") if roles[role] is None]
    if missing:
        raise RbprepError(
            f"{file}: the tokenizer has no {' or '.join(missing)} token; masked-LM data "
            "needs start, end, pad and mask tokens (train one with `rbprep train-vocab`)"
        )
    special_ids = sorted(
        {*specials.values(), *(index for index in roles.values() if index is not None)}
    )
    model = config["model"]
    pre_tokenizer = json.dumps(config.get("pre_tokenizer"))
    _check_nothing_vanishes(file, model, pre_tokenizer)
    continuation = model.get("continuing_subword_prefix") if model["type"] == "WordPiece" else None
    word_prefix = (
        "Ġ" if "ByteLevel" in pre_tokenizer else "▁" if "Metaspace" in pre_tokenizer else None
    )
    info = TokenizerInfo(
        path=str(file),
        sha256=hashlib.sha256(data).hexdigest(),
        vocab_size=id_space(tokenizer),
        cls_id=roles["cls"],  # type: ignore[arg-type]
        sep_id=roles["sep"],  # type: ignore[arg-type]
        pad_id=roles["pad"],  # type: ignore[arg-type]
        mask_id=roles["mask"],  # type: ignore[arg-type]
        unk_id=roles["unk"],
        special_ids=tuple(special_ids),
        word_prefix=word_prefix,
        continuation_prefix=continuation,
        line_break_id=line_break_id(tokenizer, config),
    )
    return tokenizer, info


def _check_nothing_vanishes(file: Location, model: dict[str, Any], pre_tokenizer: str) -> None:
    """Refuse a model that would lose text silently: a WordPiece whose unknown token is
    not in its vocabulary (tokenizers fails mid-run), a BPE over characters (not bytes)
    with neither an unknown token nor byte fallback (text it has no pieces for vanishes)."""
    kind = model.get("type")
    unk = model.get("unk_token")
    if kind == "WordPiece" and unk not in model.get("vocab", {}):
        raise RbprepError(
            f"{file}: its WordPiece model names the unknown token {unk!r}, which its "
            "vocabulary lacks; add it to the vocabulary"
        )
    if (
        kind == "BPE"
        and unk is None
        and not model.get("byte_fallback")
        and "ByteLevel" not in pre_tokenizer
    ):
        raise RbprepError(
            f"{file}: its BPE model has no unknown token and no byte fallback, so text it "
            "has no pieces for would vanish without a trace; set model.unk_token"
        )


def _configured_tokens(directory: Location) -> dict[str, str]:
    """Special-token names from a Hugging Face directory's config files, if any."""
    names: dict[str, str] = {}
    for name in ("special_tokens_map.json", "tokenizer_config.json"):
        try:
            config = directory.child(name).read_json()
        except (OSError, ValueError):
            continue
        for key, value in config.items():
            if isinstance(value, dict):  # {"content": "<mask>", ...}
                value = value.get("content")
            if key.endswith("_token") and isinstance(value, str):
                names[key] = value
    return names
