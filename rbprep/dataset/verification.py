"""``verify``: checksums of every shard and every invariant of every row.

Checks, shard by shard: the manifest's sha256 and row counts; the schema; each row's
length, ``<s>``/``</s>`` placement, no padding or mask token inside, separators only
where the mode allows them; and that the stored masks equal what the seed recomputes
(which also proves positions distinct, in range and never special, and replacements
never special, as the kernel makes them so). The first problem raises ``RbprepError``
naming the shard and row.

With ``retokenize``, a share of the corpus partitions is also read again from the corpus
the manifest names, encoded by the reference encoder (``tokenizers``, whoever encoded
the dataset) and packed by ``shard``'s kernel, and every row must equal the stored ids.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from rbprep.corpus import Corpus, Partition, open_corpus
from rbprep.dataset.format import (
    MANIFEST,
    SPLITS,
    as_location,
    file_sha256,
    id_dtype,
    shard_schema,
)
from rbprep.dataset.manifest import Manifest, ShardParameters, ShardRecord, TokenizerRecord
from rbprep.dataset.masking import MaskTables, mask_partition_rows
from rbprep.dataset.reader import read_manifest
from rbprep.encoding import ReferenceEncoder, line_break_id
from rbprep.errors import RbprepError
from rbprep.progress import ByteProgress
from rbprep.sizes import counted
from rbprep.storage import Location
from rbprep.tokenizer_info import encoding_tokenizer


@dataclass
class VerifyReport:
    shards: int
    rows: int
    tokens: int
    masked_positions: int
    retokenized_partitions: int = 0  # of ``partitions``, read and encoded again
    partitions: int = 0
    retokenized_rows: int = 0
    encoder: str = ""  # the reference encoder and its version, where it re-encoded
    output: str = "arrow"  # the dataset's --format

    def report(self) -> str:
        if self.output != "arrow":
            rows = "sequence" if self.output == "megatron" else "sample"
            line = (
                f"OK: {counted(self.shards, 'file')} of --format {self.output}, "
                f"{counted(self.rows, rows)} and {self.tokens:,} tokens verified."
            )
        else:
            line = (
                f"OK: {counted(self.shards, 'shard')}, {counted(self.rows, 'row')}, "
                f"{self.tokens:,} tokens and "
                f"{self.masked_positions:,} masked positions verified."
            )
        if self.retokenized_partitions:
            line += (
                f"\nRe-encoded {self.retokenized_partitions:,} of "
                f"{counted(self.partitions, 'partition')} "
                f"from the corpus with {self.encoder}: their {self.retokenized_rows:,} rows "
                "equal the stored ids."
            )
        return line


def verify(
    root: str | os.PathLike, *, retokenize: float = 0.0, progress: bool = False
) -> VerifyReport:
    """Check the dataset at ``root``; raise ``RbprepError`` at the first damage.

    ``retokenize`` (0 to 1) is the share of corpus partitions, at least one, that are
    read again from the corpus and re-encoded by ``tokenizers`` to check the stored ids.
    """
    if not 0 <= retokenize <= 1:
        raise RbprepError(f"--retokenize must be in 0..1, got {retokenize}")
    root = as_location(root)
    manifest = read_manifest(root)
    if manifest.output == "megatron" and retokenize:
        raise RbprepError(
            f"{root}: --retokenize compares packed rows; this dataset is --format megatron "
            "(verify it without --retokenize)"
        )
    try:
        if manifest.output == "arrow":
            report = _verify(root, manifest, progress)
        else:
            report = _verify_other(root, manifest, progress)
        if retokenize:
            _retokenize(root, manifest, retokenize, report, progress)
        return report
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        # The shards were checked against their checksums first, so what does not fit
        # together here is the manifest.
        raise RbprepError(
            f"{root.child(MANIFEST)}: damaged, it does not describe this dataset "
            f"({type(exc).__name__}: {exc}); write the dataset again with `rbprep shard`"
        ) from exc


def _verify_other(root: Location, manifest: Manifest, progress: bool) -> VerifyReport:
    """Megatron's or MDS's files: every one's sha256, then what their readers rely on:
    counts against the manifest, ids in the vocabulary, documents ended by the end
    token (Megatron), sample offsets within the file (MDS)."""
    from rbprep.dataset import mds, megatron

    tokenizer = manifest.tokenizer
    tokenizer_path = root.child(tokenizer.file)
    if tokenizer_path.kind() != "file" or file_sha256(tokenizer_path) != tokenizer.sha256:
        raise RbprepError(f"{tokenizer_path}: missing or changed (sha256 differs from manifest)")
    report = VerifyReport(0, 0, 0, 0, output=manifest.output)
    listed = [
        (split, record.file, record.bytes, record.sha256)
        for split in SPLITS
        for record in (*manifest.splits[split].shards, *manifest.splits[split].files)
    ]
    with ByteProgress("verify", sum(size for _, _, size, _ in listed), enabled=progress) as bar:
        for _, name, size, sha256 in listed:
            path = root.child(name)
            if path.kind() != "file":
                raise RbprepError(f"{path}: missing; the dataset is incomplete")
            if path.size() != size or file_sha256(path) != sha256:
                raise RbprepError(f"{path}: checksum differs from the manifest (damaged file)")
            report.shards += 1
            bar.update(size)
    for split in SPLITS:
        record = manifest.splits[split]
        if manifest.output == "megatron" and record.files:
            index = root.child(f"{split}.idx")
            dtype, lengths, documents = megatron.read_index(index.read_bytes())
            tokens = np.frombuffer(root.child(f"{split}.bin").read_bytes(), dtype=dtype)
            ends = np.cumsum(lengths, dtype=np.int64)
            last = ends[documents[1:][np.diff(documents) > 0] - 1] - 1  # each document's
            problem = (
                "its sequences or documents are not the manifest's"
                if (len(lengths), len(documents) - 1, len(tokens))
                != (record.rows, record.documents, record.tokens)
                or (len(ends) and ends[-1] != len(tokens))
                else "an id is outside the vocabulary"
                if len(tokens) and int(tokens.max()) >= tokenizer.vocab_size
                else "a document does not end with the end token"
                if np.any(tokens[last] != tokenizer.sep_id)
                else None
            )
            if problem is not None:
                raise RbprepError(f"{index}: {problem}; shard again")
        elif manifest.output == "mds":
            for shard in record.shards:
                path = root.child(shard.file)
                try:
                    row_offsets, row_tokens = _stored_rows(root, manifest, shard)
                except ValueError as exc:
                    raise RbprepError(f"{path}: not an MDS shard rbprep wrote ({exc})") from exc
                lengths = np.diff(row_offsets)
                problem = (
                    "its samples are not the manifest's"
                    if (len(lengths), int(row_offsets[-1])) != (shard.rows, shard.tokens)
                    else "a row is longer than --seq-len"
                    if len(lengths) and int(lengths.max()) > manifest.parameters.seq_len
                    else "an id is outside the vocabulary"
                    if len(row_tokens) and int(row_tokens.max()) >= tokenizer.vocab_size
                    else "a row does not start with the start token and end with the end token"
                    if np.any(row_tokens[row_offsets[:-1]] != tokenizer.cls_id)
                    or np.any(row_tokens[row_offsets[1:] - 1] != tokenizer.sep_id)
                    else None
                )
                if problem is not None:
                    raise RbprepError(f"{path}: {problem}; shard again")
            expected = [
                mds.ShardInfo(shard.file.rsplit("/", 1)[1], shard.bytes, shard.rows)
                for shard in record.shards
            ]
            index = root.child(f"{split}/{mds.INDEX_NAME}")
            written = index.read_bytes().decode()
            if written != mds.index_text(mds.index_json(expected, id_dtype(tokenizer.vocab_size))):
                raise RbprepError(f"{index}: does not list the manifest's shards; shard again")
        report.rows += record.rows
        report.tokens += record.tokens
    return report


def _verify(root: Location, manifest: Manifest, progress: bool) -> VerifyReport:
    parameters = manifest.parameters
    tokenizer = manifest.tokenizer
    tokenizer_path = root.child(tokenizer.file)
    if tokenizer_path.kind() != "file" or file_sha256(tokenizer_path) != tokenizer.sha256:
        raise RbprepError(f"{tokenizer_path}: missing or changed (sha256 differs from manifest)")
    vocab_size = tokenizer.vocab_size
    tables = MaskTables.of(_vocab(tokenizer_path), tokenizer)
    schema = shard_schema(vocab_size, parameters.dup)
    report = VerifyReport(0, 0, 0, 0)
    shards = [(split, shard) for split in SPLITS for shard in manifest.splits[split].shards]
    with ByteProgress("verify", sum(s.bytes for _, s in shards), enabled=progress) as bar:
        for split, shard in shards:
            path = root.child(shard.file)
            if path.kind() != "file":
                raise RbprepError(f"{path}: missing; the dataset is incomplete")
            if file_sha256(path) != shard.sha256:
                raise RbprepError(f"{path}: checksum differs from the manifest (damaged file)")
            try:
                table = pa.ipc.open_file(path.arrow_file()).read_all()
            except pa.ArrowException as exc:
                raise RbprepError(f"{path}: not a readable Arrow file ({exc})") from exc
            if not table.schema.equals(schema) or table.num_rows != shard.rows:
                raise RbprepError(f"{path}: schema or row count differs from the manifest")
            _check_rows(path, table, parameters, tokenizer)
            if parameters.dup is None:
                report.masked_positions += _check_computed_masks(
                    path, table, parameters, tables, split, shard
                )
            else:
                _check_masks(path, table, parameters, tables, split, shard)
                report.masked_positions += len(
                    table.column("mask_positions").combine_chunks().values
                )
            report.shards += 1
            report.rows += table.num_rows
            report.tokens += shard.tokens
            bar.update(shard.bytes)
    for split in SPLITS:
        listed = sum(shard.rows for shard in manifest.splits[split].shards)
        if listed != manifest.splits[split].rows:
            raise RbprepError(
                f"{root.child(MANIFEST)}: the {split} shards listed hold {listed:,} rows, "
                f"the split says {manifest.splits[split].rows:,}: a shard is missing from "
                "the list"
            )
    if report.rows != manifest.totals.rows:
        raise RbprepError(
            f"{root.child(MANIFEST)}: the shards hold {report.rows:,} rows, the totals say "
            f"{manifest.totals.rows:,}"
        )
    return report


def _retokenize(
    root: Location, manifest: Manifest, fraction: float, report: VerifyReport, progress: bool
) -> None:
    """Read a deterministic ``fraction`` of the partitions again, encode them with the
    reference and pack them as ``shard`` does; every row must equal the stored one."""
    from rbprep.sharding import ShardConfig, partition_rows

    corpus = _original_corpus(root, manifest)
    data = root.child(manifest.tokenizer.file).read_bytes()  # checked by _verify
    tokenizer = encoding_tokenizer(root.child(manifest.tokenizer.file), data)
    encoder = ReferenceEncoder(tokenizer, line_break_id(tokenizer, json.loads(data)))
    config = ShardConfig.of(manifest.parameters)
    shards = {
        (split, shard.partition): shard
        for split in SPLITS
        for shard in manifest.splits[split].shards
    }
    chosen = _chosen_partitions(len(corpus.partitions), fraction)
    info = manifest.tokenizer
    with ByteProgress(
        "retokenize", sum(corpus.partitions[p].size for p in chosen), enabled=progress
    ) as bar:
        for partition in (corpus.partitions[p] for p in chosen):
            rows = partition_rows(corpus, partition, config, encoder, info.cls_id, info.sep_id)
            for split in SPLITS:
                row_offsets = rows[split][0]
                shard = shards.get((split, partition.id))
                if shard is None:
                    if len(row_offsets) > 1:
                        raise RbprepError(
                            f"{root.child(MANIFEST)}: partition {partition.id} encodes to "
                            f"{len(row_offsets) - 1:,} {split} rows, but the dataset has no "
                            f"{split} shard for it"
                        )
                    continue
                path = root.child(shard.file)
                stored_offsets, stored_ids = _stored_rows(root, manifest, shard)
                _compare_rows(path, corpus, partition, stored_offsets, stored_ids, rows[split])
                report.retokenized_rows += len(row_offsets) - 1
            bar.update(partition.size)
    report.retokenized_partitions = len(chosen)
    report.partitions = len(corpus.partitions)
    report.encoder = f"{encoder.id.name} {encoder.id.version}"


def _stored_rows(
    root: Location, manifest: Manifest, shard: ShardRecord
) -> tuple[np.ndarray, np.ndarray]:
    """A shard's rows as stored: row offsets and ids (Arrow's or MDS's)."""
    path = root.child(shard.file)
    if manifest.output == "mds":
        from rbprep.dataset import mds

        return mds.read_shard(path.read_bytes(), id_dtype(manifest.tokenizer.vocab_size))
    table = pa.ipc.open_file(path.arrow_file()).read_all()
    return _flat(table.column("input_ids"))


def _original_corpus(root: Location, manifest: Manifest) -> Corpus:
    """The corpus as ``shard`` planned it: its files, text field and partitions."""
    recorded = manifest.corpus
    try:
        corpus = open_corpus(
            recorded.files,
            text_field=recorded.text_field or "text",
            partition_size=recorded.partition_size,
        )
    except RbprepError as exc:
        raise RbprepError(
            f"--retokenize reads the corpus the dataset was made from, and cannot: {exc}"
        ) from exc
    planned = (len(corpus.partitions), corpus.size)
    expected = (recorded.partitions, recorded.bytes if recorded.bytes is not None else corpus.size)
    if planned != expected:
        raise RbprepError(
            f"{root.child(MANIFEST)}: the corpus changed since it was sharded "
            f"({planned[1]:,} bytes in {planned[0]} partitions now, {expected[1]:,} in "
            f"{expected[0]} then); --retokenize needs the text the dataset was made from"
        )
    return corpus


def _chosen_partitions(count: int, fraction: float) -> list[int]:
    """``ceil(fraction * count)`` partitions (at least one), the same on every run:
    those whose hash is smallest, in corpus order."""
    wanted = max(1, math.ceil(fraction * count - 1e-9))
    digest = [
        hashlib.blake2b(f"retokenize:{p}".encode(), digest_size=8).digest() for p in range(count)
    ]
    return sorted(sorted(range(count), key=digest.__getitem__)[:wanted])


def _compare_rows(
    path: Location,
    corpus: Corpus,
    partition: Partition,
    stored_offsets: np.ndarray,
    stored_ids: np.ndarray,
    rows: tuple[np.ndarray, np.ndarray],
) -> None:
    row_offsets, row_tokens = rows
    if np.array_equal(stored_offsets, row_offsets) and np.array_equal(stored_ids, row_tokens):
        return
    count = min(len(stored_offsets), len(row_offsets)) - 1
    row = next(
        (
            r
            for r in range(count)
            if not np.array_equal(
                stored_ids[stored_offsets[r] : stored_offsets[r + 1]],
                row_tokens[row_offsets[r] : row_offsets[r + 1]],
            )
        ),
        count,
    )
    files = sorted({corpus.files[piece.file].path for piece in partition.pieces})
    raise RbprepError(
        f"{path}: row {row}: the stored ids differ from {', '.join(files)} (partition "
        f"{partition.id}) encoded again by tokenizers; the dataset was written wrong or the "
        "corpus changed since"
    )


def _flat(column: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    array = column.combine_chunks()
    offsets = array.offsets.to_numpy().astype(np.int64)
    return offsets - offsets[0], array.values.to_numpy()[offsets[0] : offsets[-1]]


def _check_rows(
    path: Location, table: pa.Table, parameters: ShardParameters, tokenizer: TokenizerRecord
) -> None:
    offsets, ids = _flat(table.column("input_ids"))
    lengths = np.diff(offsets)
    starts, ends = offsets[:-1], offsets[1:] - 1

    def fail(rows: np.ndarray, problem: str) -> None:
        if rows.size:
            raise RbprepError(f"{path}: row {int(rows[0])}: {problem}")

    fail(np.flatnonzero((lengths < 3) | (lengths > parameters.seq_len)), "bad row length")
    fail(np.flatnonzero(ids[starts] != tokenizer.cls_id), "does not start with <s>/[CLS]")
    fail(np.flatnonzero(ids[ends] != tokenizer.sep_id), "does not end with </s>/[SEP]")
    row_of = np.repeat(np.arange(len(lengths)), lengths)
    inner = np.ones(len(ids), dtype=np.bool_)
    inner[starts] = inner[ends] = False
    fail(row_of[inner & (ids == tokenizer.cls_id)], "<s>/[CLS] inside the row")
    fail(row_of[(ids == tokenizer.pad_id) | (ids == tokenizer.mask_id)], "pad or mask id")
    fail(row_of[ids >= tokenizer.vocab_size], "id outside the vocabulary")
    separators = inner & (ids == tokenizer.sep_id)
    if parameters.mode == "doc-sentences":
        fail(row_of[separators], "document separator in a doc-sentences row")
    # A separator stands between two documents: never first or last of the content,
    # never two in a row.
    following = np.zeros(len(ids), dtype=np.bool_)
    following[1:] = separators[:-1]
    fail(row_of[separators & following], "two separators in a row")
    before_end = np.zeros(len(ids), dtype=np.bool_)
    before_end[ends - 1] = True
    fail(
        row_of[separators & (before_end | np.isin(np.arange(len(ids)), starts + 1))],
        "stray separator",
    )


def _check_masks(
    path: Location,
    table: pa.Table,
    parameters: ShardParameters,
    tables: MaskTables,
    split: str,
    shard: ShardRecord,
) -> None:
    offsets, ids = _flat(table.column("input_ids"))
    positions, groups, random_tokens, position_offsets, random_offsets = mask_partition_rows(
        offsets,
        ids.astype(np.uint32),
        tables,
        parameters.masks,
        split,
        shard.partition,
        range(parameters.dup),
    )
    stored_position_offsets, stored_positions = _flat(table.column("mask_positions"))
    stored_random_offsets, stored_random = _flat(table.column("random_tokens"))
    stored_groups = table.column("mask_groups").combine_chunks().flatten().to_numpy()
    expected_groups = groups.reshape(len(offsets) - 1, -1)
    stored_groups = stored_groups.reshape(expected_groups.shape)
    bad = np.flatnonzero(
        (np.diff(stored_position_offsets) != np.diff(position_offsets))
        | (np.diff(stored_random_offsets) != np.diff(random_offsets))
        | (stored_groups != expected_groups).any(axis=1)
    )
    if bad.size == 0:
        bad_positions = np.flatnonzero(stored_positions != positions)
        bad_random = np.flatnonzero(stored_random != random_tokens)
        rows = []
        if bad_positions.size:
            rows.append(np.searchsorted(position_offsets, bad_positions[0], side="right") - 1)
        if bad_random.size:
            rows.append(np.searchsorted(random_offsets, bad_random[0], side="right") - 1)
        bad = np.array(sorted(rows))
    if bad.size:
        raise RbprepError(
            f"{path}: row {int(bad[0])}: masks differ from what the seed recomputes "
            "(damaged data or different rbprep masking)"
        )


# The copies of a dynamic dataset whose masks verify computes and checks: the first
# epochs' and a far one.
DYNAMIC_COPIES = (0, 1, 2, 99)


def _check_computed_masks(
    path: Location,
    table: pa.Table,
    parameters: ShardParameters,
    tables: MaskTables,
    split: str,
    shard: ShardRecord,
) -> int:
    """A dynamic dataset stores no masks: compute copies ``DYNAMIC_COPIES`` and check
    each against the masking rules (positions distinct, inside the row, never special;
    at most ``max_predictions``; replacements non-special ids). Returns the positions."""
    offsets, ids = _flat(table.column("input_ids"))
    ids = ids.astype(np.uint32)
    mask_parameters = parameters.masks
    lengths = np.diff(offsets)
    total = 0
    for copy in DYNAMIC_COPIES:
        masks = mask_partition_rows(
            offsets, ids, tables, mask_parameters, split, shard.partition, range(copy, copy + 1)
        )
        counts = np.diff(masks.position_offsets)  # (rows,) positions of this copy
        row_of = np.repeat(np.arange(len(lengths)), counts)
        positions = masks.positions.astype(np.int64)
        problems = [
            (counts > mask_parameters.max_predictions, "more masked positions than allowed"),
            (
                _flags_per_row(positions >= lengths[row_of], row_of, len(lengths)),
                "a mask position beyond its end",
            ),
            (
                _flags_per_row(
                    tables.special[
                        ids[offsets[row_of] + np.minimum(positions, lengths[row_of] - 1)]
                    ],
                    row_of,
                    len(lengths),
                ),
                "a special token chosen for masking",
            ),
            (_repeated_per_row(positions, row_of, len(lengths)), "a position chosen twice"),
        ]
        random_rows = np.repeat(np.arange(len(lengths)), np.diff(masks.random_offsets))
        problems.append(
            (
                _flags_per_row(tables.special[masks.random_tokens], random_rows, len(lengths)),
                "a special token drawn as a random replacement",
            )
        )
        for bad, what in problems:
            if bad.any():
                raise RbprepError(
                    f"{path}: row {int(np.argmax(bad))}, copy {copy}: the computed masks have "
                    f"{what} (a different rbprep masking, or damaged data)"
                )
        total += len(masks.positions)
    return total


def _flags_per_row(flags: np.ndarray, row_of: np.ndarray, rows: int) -> np.ndarray:
    """(rows,) bool: any flag set among each row's elements (``row_of`` each's row)."""
    return np.bincount(row_of[flags], minlength=rows) > 0


def _repeated_per_row(positions: np.ndarray, row_of: np.ndarray, rows: int) -> np.ndarray:
    """(rows,) bool: a row whose positions hold one value twice."""
    keys = row_of * (1 << 20) + positions  # a row's positions are below 65,536
    ordered = np.sort(keys)
    twice = ordered[1:] == ordered[:-1]
    return np.bincount(ordered[1:][twice] >> 20, minlength=rows) > 0


def _vocab(tokenizer_path: Location) -> dict[str, int]:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_str(tokenizer_path.read_bytes().decode())
    return tokenizer.get_vocab(with_added_tokens=True)
