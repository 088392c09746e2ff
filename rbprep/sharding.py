"""``shard``: tokenise, pack into rows, mask ``dup`` copies, write Arrow shards.

The work is one task per corpus partition (``shard_partition``); its output depends
only on (config, partition), so the run around it (``shard``) may run tasks in any
order, in any number of processes, and skip those an interrupted run finished: a
partition is done when its marker ``.parts/NNNNN.json`` exists, which is written after
its shard files were renamed into place. The manifest is written last.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from rbprep import __version__
from rbprep.corpus import Corpus, Partition, ReadStats, document_coin, open_corpus
from rbprep.dataset.format import (
    FORMAT_NAME,
    FORMAT_VERSION,
    MANIFEST,
    SPLITS,
    read_json,
    shard_table,
    write_json_atomically,
    write_shard,
)
from rbprep.errors import RbprepError
from rbprep.executors import THREADS_PER_PROCESS, run_tasks
from rbprep.progress import ByteProgress
from rbprep.sizes import format_size
from rbprep.storage import Location
from rbprep.tokenizer_info import (
    TokenizerInfo,
    cut_at_breaks,
    encoding_tokenizer,
    join_lines,
    load_tokenizer,
)

MODES = ("full-sentences", "doc-sentences")
COMPRESSIONS = ("none", "zstd", "lz4")
# Units per encode call: bounds the Encoding objects alive at once; measured a little
# faster than larger batches.
_ENCODE_BATCH = 2_000
_JOINED_BATCH = 256  # joined texts per encode call, about 1 MB
_STREAMS = {"train": 0, "valid": 1}  # separates the splits' mask streams
_PARTS = ".parts"
_RUN = ".run.json"
_LOCK = ".lock"


@dataclass(frozen=True)
class ShardConfig:
    """Parameters of ``shard`` that decide its output; CLI options carry the same names."""

    seq_len: int = 512
    dup: int = 10
    mode: str = "full-sentences"
    mask_prob: float = 0.15
    random_prob: float = 0.1
    keep_prob: float = 0.1
    whole_word: bool = False
    seed: int = 0
    valid_fraction: float = 0.01
    compression: str = "none"

    @property
    def max_predictions(self) -> int:
        """The cap on masked positions per copy: ceil(mask_prob * (seq_len - 2))."""
        return int(np.ceil(self.mask_prob * (self.seq_len - 2) - 1e-9))

    def check(self) -> None:
        if not 8 <= self.seq_len <= 65535:
            raise RbprepError(f"--seq-len must be in 8..65535, got {self.seq_len}")
        if not 1 <= self.dup <= 255:
            raise RbprepError(f"--dup must be in 1..255, got {self.dup}")
        if self.mode not in MODES:
            raise RbprepError(f"--mode must be one of {', '.join(MODES)}")
        if self.compression not in COMPRESSIONS:
            raise RbprepError(f"--compression must be one of {', '.join(COMPRESSIONS)}")
        if not 0 < self.mask_prob < 1:
            raise RbprepError("--mask-prob must be between 0 and 1")
        if self.random_prob < 0 or self.keep_prob < 0 or self.random_prob + self.keep_prob > 1:
            raise RbprepError("--random-prob and --keep-prob must be >= 0 and sum to at most 1")
        if not 0 <= self.valid_fraction < 1:
            raise RbprepError("--valid-fraction must be in [0, 1)")
        if not 0 <= self.seed < 2**64:
            raise RbprepError(f"--seed must be in 0..2**64-1, got {self.seed}")


@dataclass
class ShardSummary:
    """What ``shard`` did; ``as_dict()`` is the ``--json`` output."""

    out: str
    manifest: dict[str, Any]
    partitions: int
    partitions_resumed: int
    seconds: float
    text_bytes: int
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def report(self) -> str:
        totals = self.manifest["totals"]
        lines = [
            f"Sharded {format_size(self.text_bytes)} of text in {self.seconds:.1f} s "
            f"({self.text_bytes / 1e6 / max(self.seconds, 1e-9):.2f} MB/s): "
            f"{totals['documents']:,} documents, {totals['content_tokens']:,} tokens",
        ]
        for split in SPLITS:
            info = self.manifest["splits"][split]
            lines.append(
                f"  {split:<6} {info['rows']:>9,} rows  {info['tokens']:>12,} tokens  "
                f"{len(info['shards'])} shards  {format_size(info['bytes'])}"
            )
        lines.append(
            f"Padding {totals['padding_share']:.1%} of {totals['slots']:,} slots; "
            f"{totals['bytes_per_token']:.2f} bytes on disk per token "
            f"({self.manifest['parameters']['dup']} masked copies)."
        )
        problems = [f"{n} {reason}" for reason, n in totals["read"]["skipped"].items()]
        for name in ("invalid_utf8", "nul_chars", "malformed_records", "empty_files"):
            if totals["read"][name]:
                problems.append(f"{totals['read'][name]} {name.replace('_', ' ')}")
        if problems:
            lines.append("Input problems (skipped or replaced): " + ", ".join(problems))
        if self.partitions_resumed:
            lines.append(f"Resumed: {self.partitions_resumed} partitions were already done.")
        lines.append(f"-> {self.out}")
        return "\n".join(lines)


# --- one partition ------------------------------------------------------------------------

_worker_tokenizers: dict[str, Any] = {}


def _tokenizer(path: str) -> Any:
    if path not in _worker_tokenizers:
        _worker_tokenizers[path] = encoding_tokenizer(Location(path))
    return _worker_tokenizers[path]


def _shard_partition_task(
    corpus: Corpus,
    tokenizer_path: str,
    info: TokenizerInfo,
    config: ShardConfig,
    out: str,
    partition: Partition,
) -> dict[str, Any]:
    return shard_partition(corpus, partition, tokenizer_path, info, config, out)


def shard_partition(
    corpus: Corpus,
    partition: Partition,
    tokenizer_path: str,
    info: TokenizerInfo,
    config: ShardConfig,
    out: str,
) -> dict[str, Any]:
    """Read, tokenise, pack, mask and write one partition; return its record.

    ``info`` is the tokenizer's as ``load_tokenizer`` resolved it where the run started
    (the roles may come from files beside the tokenizer that a worker cannot see); the
    worker loads only the tokenizer.json at ``tokenizer_path``.

    Writes ``out/{train,valid}/shard-NNNNN.arrow`` (a split with no rows gets no file)
    and then the marker ``out/.parts/NNNNN.json`` holding the returned record.
    """
    warm = _kernels_warming()
    tokenizer = _tokenizer(tokenizer_path)
    stats = ReadStats()
    units: dict[str, list[str]] = {split: [] for split in SPLITS}
    starts: dict[str, list[bool]] = {split: [] for split in SPLITS}
    documents = dict.fromkeys(SPLITS, 0)
    for index, document in enumerate(corpus.read_partition(partition, stats)):
        valid = config.valid_fraction and document_coin(
            config.seed, "valid", partition.id, index, config.valid_fraction
        )
        split = "valid" if valid else "train"
        # A document's later lines continue its running text: tokenised with a leading
        # space, they read as they would joined by spaces ("Ġword"), at no token's cost.
        units[split].append(document.units[0])
        units[split].extend(" " + unit for unit in document.units[1:])
        starts[split].append(True)
        starts[split].extend(itertools.repeat(False, len(document.units) - 1))
        documents[split] += 1
    record: dict[str, Any] = {"partition": partition.id, "read": stats.as_dict(), "splits": {}}
    out_dir = Location(out)
    special = info.special_mask()
    replacements = info.replacement_ids(tokenizer)  # (vocab - specials,)
    word_starts = info.word_starts(tokenizer) if config.whole_word else np.ones(1, np.bool_)
    encoded = {
        split: _encode(tokenizer, units[split], starts[split], info.line_break_id)
        for split in SPLITS
    }
    # The unknown token is the model's own answer to text it cannot spell; any other
    # special in the encoding came from text spelling it.
    injectable = special.copy()
    if info.unk_id is not None:
        injectable[info.unk_id] = False
    for token_ids, _ in encoded.values():
        if injectable[token_ids].any():
            _refuse_injected(corpus, partition, tokenizer, info, token_ids[injectable[token_ids]])
    warm.join()
    from rbprep import kernels

    for split in SPLITS:
        token_ids, unit_lengths = encoded.pop(split)
        units_starting = np.array(starts[split], dtype=np.bool_)  # (units,)
        row_offsets, row_tokens = kernels.pack_rows(
            token_ids,
            unit_lengths,
            units_starting,
            config.seq_len,
            config.mode == "full-sentences",
            info.cls_id,
            info.sep_id,
        )
        positions, groups, random_tokens, position_offsets, random_offsets = kernels.mask_rows(
            row_offsets,
            row_tokens,
            special,
            replacements,
            word_starts,
            config.seed,
            _STREAMS[split],
            partition.id,
            0,
            config.dup,
            config.mask_prob,
            config.random_prob,
            config.keep_prob,
            config.max_predictions,
            config.whole_word,
        )
        rows = len(row_offsets) - 1
        split_record: dict[str, Any] = {
            "documents": documents[split],
            "units": len(units[split]),
            "content_tokens": int(unit_lengths.sum()),
            "rows": rows,
            "tokens": int(row_offsets[-1]),
            "masked_positions": len(positions),
            "length_histogram": _length_histogram(np.diff(row_offsets), config.seq_len),
        }
        if rows:
            table = shard_table(
                row_offsets,
                row_tokens,
                position_offsets,
                positions,
                groups,
                random_offsets,
                random_tokens,
                info.vocab_size,
                config.dup,
            )
            name = f"{split}/shard-{partition.id:05d}.arrow"
            compression = None if config.compression == "none" else config.compression
            split_record["file"] = name
            digest, size = write_shard(table, out_dir.child(name), compression)
            split_record["sha256"], split_record["bytes"] = digest, size
        record["splits"][split] = split_record
    write_json_atomically(record, out_dir.child(f"{_PARTS}/{partition.id:05d}.json"))
    return record


_warming_lock = threading.Lock()
_warming: list[threading.Thread] = []  # the process's one warming thread, once started


def _kernels_warming() -> threading.Thread:
    """The thread that loads the kernels, started on the first call in this process.

    Importing numba and loading the kernels from its cache takes most of a second: it
    runs while the caller reads and tokenises (the tokenizer leaves the GIL free)."""
    with _warming_lock:
        if not _warming:
            _warming.append(threading.Thread(target=_warm_kernels, daemon=True))
            _warming[0].start()
        return _warming[0]


def _warm_kernels() -> None:
    """Import the kernels and load both from numba's cache, on tiny inputs."""
    from rbprep import kernels

    offsets, tokens = kernels.pack_rows(
        np.arange(5, 9, dtype=np.uint32), np.array([4]), np.array([True]), 8, True, 0, 1
    )
    special = np.zeros(9, dtype=np.bool_)  # (vocab,) bool
    special[:5] = True
    for whole_word in (False, True):
        kernels.mask_rows(
            offsets,
            tokens,
            special,
            np.arange(5, 9, dtype=np.uint32),
            np.ones(9, dtype=np.bool_),
            0,
            0,
            0,
            0,
            1,
            0.15,
            0.1,
            0.1,
            1,
            whole_word,
        )


def _refuse_injected(
    corpus: Corpus,
    partition: Partition,
    tokenizer: Any,
    info: TokenizerInfo,
    injected: np.ndarray,
) -> None:
    """Text that this tokenizer encodes as a special token, though specials are encoded
    as text: a piece of its model's own vocabulary (SentencePiece-style), or an added
    token not marked special. Masking and packing would take it for the real thing."""
    token = tokenizer.id_to_token(int(injected[0]))
    files = sorted({corpus.files[piece.file].path for piece in partition.pieces})
    raise RbprepError(
        f"{', '.join(files)}: text encodes as the special token {token!r} (id "
        f"{int(injected[0])}) with {info.path}, {injected.size} time(s) in partition "
        f"{partition.id}; remove that text, or use a tokenizer whose specials text cannot spell"
    )


def _encode(
    tokenizer: Any, units: list[str], starts: list[bool], line_break_id: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """Token ids of all units concatenated (uint32) and each unit's length (int64).

    ``starts`` marks the units that start a document. With a ``line_break_id`` (see
    ``tokenizer_info.line_break_id``) a document's units are encoded a few KB at a time,
    joined by newlines, and cut apart at the breaks: the same ids, fewer inputs.
    """
    joined = None
    if line_break_id is not None:
        joined = _encode_joined(tokenizer, units, starts, line_break_id)
    return joined or _encode_texts(tokenizer, units, _ENCODE_BATCH)


def _encode_joined(
    tokenizer: Any, units: list[str], starts: list[bool], line_break_id: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """``_encode`` by joined lines; None where ``cut_at_breaks`` finds the texts not as
    joined."""
    texts, group_sizes = join_lines(units, starts)
    ids, text_lengths = _encode_texts(tokenizer, texts, _JOINED_BATCH)
    cut = cut_at_breaks(text_lengths, ids, group_sizes, line_break_id)
    return None if cut is None else (cut[1], cut[0])


def _encode_texts(tokenizer: Any, texts: list[str], batch: int) -> tuple[np.ndarray, np.ndarray]:
    """Token ids of all texts concatenated (uint32) and each text's length (int64)."""
    lengths: list[np.ndarray] = [np.zeros(0, dtype=np.int64)]
    token_ids: list[np.ndarray] = [np.zeros(0, dtype=np.uint32)]
    for start in range(0, len(texts), batch):
        encodings = tokenizer.encode_batch_fast(
            texts[start : start + batch], add_special_tokens=False
        )
        id_lists = [encoding.ids for encoding in encodings]
        batch_lengths = np.fromiter(map(len, id_lists), dtype=np.int64, count=len(id_lists))
        lengths.append(batch_lengths)
        token_ids.append(
            np.fromiter(
                itertools.chain.from_iterable(id_lists),
                dtype=np.uint32,
                count=int(batch_lengths.sum()),
            )
        )
    return np.concatenate(token_ids), np.concatenate(lengths)


def _length_histogram(lengths: np.ndarray, seq_len: int) -> dict[str, int]:
    edges = np.linspace(0, seq_len, 9).astype(np.int64)
    # Bins are [lo, hi); a length L belongs to "lo+1-hi" when L - 1 is in [lo, hi).
    counts, _ = np.histogram(lengths - 1, bins=edges)
    return {f"{lo + 1}-{hi}": int(n) for lo, hi, n in zip(edges, edges[1:], counts, strict=False)}


# --- the run -------------------------------------------------------------------------------


def shard(
    corpus: Sequence[str | os.PathLike] | Corpus,
    tokenizer: str | os.PathLike,
    out: str | os.PathLike,
    config: ShardConfig = ShardConfig(),
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    resume: bool = False,
    force: bool = False,
    progress: bool = False,
) -> ShardSummary:
    """Shard ``corpus`` with ``tokenizer`` into ``out`` (DESIGN §5-7).

    ``workers`` processes run partitions (default: all cores), or the Dask cluster at
    ``scheduler`` (``tcp://HOST:PORT``) does, its workers reading the inputs and
    writing to ``out`` (a path they all reach); the output is the same either way.
    ``resume`` finishes an interrupted run, byte-identical to an uninterrupted one;
    ``force`` replaces an existing dataset. A second run on the same ``out`` while one
    is live is refused.
    """
    config.check()
    workers = workers or os.cpu_count() or 1
    if scheduler is None and workers <= THREADS_PER_PROCESS:
        _kernels_warming()  # the tasks will run in this process
    if not isinstance(corpus, Corpus):
        corpus = open_corpus(corpus)
    loaded = load_tokenizer(tokenizer)
    info = loaded[1]
    if info.vocab_size > 2**32:
        raise RbprepError("vocabularies over 2**32 entries are not supported")
    if config.whole_word and not (info.word_prefix or info.continuation_prefix):
        raise RbprepError(
            f"{info.path}: --whole-word needs pieces that mark where words start (Ġ, ▁) or "
            "go on (##); this tokenizer's do neither, so only token masking is possible"
        )
    out_dir = Location(out)
    started = time.perf_counter()
    with _locked(out_dir):
        run_state = _run_state(corpus, info, config)
        done = _prepare(out_dir, run_state, resume=resume, force=force)
        out_dir.child("tokenizer.json").write_atomically(Location(info.path).read_bytes())
        todo = [p for p in corpus.partitions if p.id not in done]
        records = {p: read_json(out_dir.child(f"{_PARTS}/{p:05d}.json")) for p in done}
        # Tasks read the dataset's own copy of the tokenizer: on a cluster it is in the
        # shared output location, where every worker can reach it.
        tokenizer_copy = str(out_dir.child("tokenizer.json"))
        _worker_tokenizers[tokenizer_copy] = loaded[0]
        task = functools.partial(
            _shard_partition_task, corpus, tokenizer_copy, info, config, str(out_dir)
        )
        with ByteProgress("shard", sum(p.size for p in todo), enabled=progress) as bar:
            for partition, record in run_tasks(task, todo, workers=workers, scheduler=scheduler):
                records[partition.id] = record
                bar.update(partition.size)
        manifest = _manifest(corpus, info, config, [records[p.id] for p in corpus.partitions])
        if manifest["totals"]["documents"] == 0:
            raise RbprepError(
                f"the corpus holds no text: {len(corpus.files)} readable files, no document; "
                f"nothing written to {out_dir} but its run state"
            )
        write_json_atomically(manifest, out_dir.child(MANIFEST))
    seconds = time.perf_counter() - started
    return ShardSummary(
        out=str(out_dir),
        manifest=manifest,
        partitions=len(corpus.partitions),
        partitions_resumed=len(done),
        seconds=round(seconds, 3),
        text_bytes=manifest["totals"]["read"]["text_bytes"],
    )


def _locked(out_dir: Location) -> contextlib.AbstractContextManager[None]:
    """Hold an exclusive lock on ``out_dir`` for the run; refuse if another run has it."""
    out_dir.make_directory()
    return out_dir.child(_LOCK).lock(
        f"{out_dir}: another rbprep shard is writing here; wait for it or choose another --out"
    )


def _run_state(corpus: Corpus, info: TokenizerInfo, config: ShardConfig) -> dict[str, Any]:
    """What must not change between an interrupted run and its --resume."""
    return {
        "parameters": asdict(config),
        "tokenizer_sha256": info.sha256,
        "partition_size": corpus.partition_size,
        "files": [file.path for file in corpus.files],
        "partitions": [
            [[piece.file, piece.start, piece.end] for piece in p.pieces] for p in corpus.partitions
        ],
    }


def _prepare(
    out_dir: Location, run_state: dict[str, Any], *, resume: bool, force: bool
) -> set[int]:
    """Make ``out_dir`` ready; return the ids of partitions already done (resume)."""
    run_file, manifest = out_dir.child(_RUN), out_dir.child(MANIFEST)
    previous = read_json(run_file) if run_file.exists() else None
    complete = manifest.exists()
    others = [name for name in out_dir.entries() if name != _LOCK]
    if force:
        for name in (*SPLITS, _PARTS, MANIFEST, _RUN, "tokenizer.json"):
            out_dir.child(name).delete()
    elif resume and previous is not None:
        if previous != run_state:
            raise RbprepError(
                f"{out_dir}: the interrupted run used other parameters, tokenizer or corpus; "
                "rerun it as it was, or use --force to start over"
            )
        manifest.delete()
    elif complete:
        raise RbprepError(f"{out_dir}: holds a finished dataset; use --force to replace it")
    elif previous is not None:
        raise RbprepError(
            f"{out_dir}: holds an interrupted run; use --resume to finish it or --force "
            "to start over"
        )
    elif others:
        raise RbprepError(
            f"{out_dir}: directory is not empty ({', '.join(others[:3])}); "
            "choose an empty --out or use --force"
        )
    for name in (*SPLITS, _PARTS):
        out_dir.child(name).make_directory()
        for stale in out_dir.child(name).files():
            if stale.name.endswith(".tmp"):  # a killed run's half-written files
                stale.delete()
    write_json_atomically(run_state, run_file)
    markers = out_dir.child(_PARTS).files()
    return {
        int(marker.name.removesuffix(".json"))
        for marker in markers
        if marker.name.endswith(".json")
    }


def _manifest(
    corpus: Corpus, info: TokenizerInfo, config: ShardConfig, records: list[dict[str, Any]]
) -> dict[str, Any]:
    """The dataset's description: parameters, tokenizer, shards and totals (no timings,
    so the same corpus and parameters always give the same manifest)."""
    read = ReadStats()
    corpus.count_skipped(read)
    splits: dict[str, Any] = {}
    for split in SPLITS:
        shards = []
        histogram: dict[str, int] = {}
        totals = dict.fromkeys(
            ("documents", "units", "content_tokens", "rows", "tokens", "masked_positions", "bytes"),
            0,
        )
        for record in records:
            part = record["splits"][split]
            for key in totals:
                totals[key] += part.get(key, 0)
            for bucket, count in part["length_histogram"].items():
                histogram[bucket] = histogram.get(bucket, 0) + count
            if part["rows"]:
                shards.append(
                    {
                        "file": part["file"],
                        "partition": record["partition"],
                        "rows": part["rows"],
                        "tokens": part["tokens"],
                        "bytes": part["bytes"],
                        "sha256": part["sha256"],
                    }
                )
        splits[split] = {**totals, "length_histogram": histogram, "shards": shards}
    for record in records:
        read.merge(ReadStats(**record["read"]))
    rows = sum(splits[s]["rows"] for s in SPLITS)
    tokens = sum(splits[s]["tokens"] for s in SPLITS)
    slots = rows * config.seq_len
    stored = sum(splits[s]["bytes"] for s in SPLITS)
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "rbprep_version": __version__,
        "parameters": {**asdict(config), "max_predictions": config.max_predictions},
        "tokenizer": {
            "file": "tokenizer.json",
            "sha256": info.sha256,
            "vocab_size": info.vocab_size,
            "cls_id": info.cls_id,
            "sep_id": info.sep_id,
            "pad_id": info.pad_id,
            "mask_id": info.mask_id,
            "unk_id": info.unk_id,
            "special_ids": list(info.special_ids),
            "word_prefix": info.word_prefix,
            "continuation_prefix": info.continuation_prefix,
        },
        "corpus": {
            "files": [file.path for file in corpus.files],
            "partition_size": corpus.partition_size,
            "partitions": len(corpus.partitions),
        },
        "splits": splits,
        "totals": {
            "documents": sum(splits[s]["documents"] for s in SPLITS),
            "units": sum(splits[s]["units"] for s in SPLITS),
            "content_tokens": sum(splits[s]["content_tokens"] for s in SPLITS),
            "rows": rows,
            "tokens": tokens,
            "slots": slots,
            "padding_tokens": slots - tokens,
            "padding_share": (slots - tokens) / slots if slots else 0.0,
            "bytes": stored,
            "bytes_per_token": stored / tokens if tokens else 0.0,
            "read": read.as_dict(),
        },
    }
