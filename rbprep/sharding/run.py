"""``shard``: the run. Tokenise, pack, mask and write, one task per corpus partition.

A partition's task (``shard_partition``) runs the pipeline (``rbprep.sharding.pipeline``)
and hands the result to the output's sink (``rbprep.sharding.sinks``); its output
depends only on (config, partition), so the run (``shard``) may run tasks in any order,
in any number of processes, and skip those an interrupted run finished: a partition is
done when its marker ``.parts/NNNNN.json`` exists, which is written after its files
were renamed into place. The sink then joins what needs joining, and the manifest is
written last. The run knows no format.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from rbprep import __version__
from rbprep.aot import kernels_in_use
from rbprep.corpus import Corpus, Partition, ReadStats, open_corpus
from rbprep.dataset.format import MANIFEST, SPLITS, read_json, write_json_atomically
from rbprep.dataset.manifest import (
    CorpusRecord,
    EncoderRecord,
    FileRecord,
    Manifest,
    ShardRecord,
    SplitRecord,
    TokenizerRecord,
    Totals,
)
from rbprep.encoding import CHECK_FRACTION, REFERENCE_NAME, EncoderId, EncoderMismatch, Fallback
from rbprep.errors import RbprepError
from rbprep.executors import THREADS_PER_PROCESS, run_tasks
from rbprep.progress import ByteProgress
from rbprep.sharding.config import FORMATS, ShardConfig
from rbprep.sharding.pipeline import (
    STAGES,
    StageClock,
    fast_encoder_loading,
    kernels_warming,
    make_work,
    run_pipeline,
    tokenizer_work,
    work_for,
)
from rbprep.sharding.records import PartFile, PartitionRecord, SplitPart
from rbprep.sharding.sinks import Sink, sink_class, sink_for
from rbprep.sizes import counted, format_size
from rbprep.storage import Location, WriteBehind, check_output_directory, json_bytes
from rbprep.tokenizer_info import TokenizerInfo, load_tokenizer

_PARTS = ".parts"
_RUN = ".run.json"
_LOCK = ".lock"
logger = logging.getLogger("rbprep")


@dataclass
class ShardSummary:
    """What ``shard`` did; ``as_dict()`` is the ``--json`` output."""

    out: str
    manifest: Manifest
    partitions: int
    partitions_resumed: int
    seconds: float
    text_bytes: int
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "manifest": self.manifest.to_json()}

    def report(self) -> str:
        totals = self.manifest.totals
        lines = [
            f"Sharded {format_size(self.text_bytes)} read in {self.seconds:.1f} s "
            f"({self.text_bytes / 1e6 / max(self.seconds, 1e-9):.2f} MB/s): "
            f"{totals.documents:,} documents, {totals.content_tokens:,} tokens of text",
        ]
        output = self.manifest.output
        for split in SPLITS:
            info = self.manifest.splits[split]
            if output == "megatron":  # documents (or units) as sequences, no rows
                files = ", ".join(file.file for file in info.files) or "no files"
                lines.append(
                    f"  {split:<6} {info.rows:>9,} sequences  {info.tokens:>12,} tokens "
                    f"with end tokens  {files}  {format_size(info.bytes)}"
                )
                continue
            lines.append(
                f"  {split:<6} {info.rows:>9,} rows  {info.tokens:>12,} tokens with "
                f"specials  {counted(len(info.shards), 'shard'):<10}  "
                f"{format_size(info.bytes)}"
            )
        valid_fraction = self.manifest.parameters.valid_fraction
        if valid_fraction and not self.manifest.splits["valid"].rows:
            lines.append(
                f"  valid is empty: of {counted(totals.documents, 'document')}, none fell to "
                f"--valid-fraction {valid_fraction}; pretrain will have no validation loss"
            )
        if output != "arrow":
            what = "ids only: its trainers mask as they load"
        elif (dup := self.manifest.parameters.dup) is not None:
            what = counted(dup, "masked copy", "masked copies")
        else:
            what = "ids only: masks are computed for each epoch, --masking dynamic"
        padding = f"Padding {totals.padding_share:.1%} of {totals.slots:,} slots; "
        lines.append(
            ("" if output == "megatron" else padding)
            + f"{totals.bytes_per_token:.2f} bytes on disk per stored token ({what})."
        )
        problems = ReadStats.from_dict(totals.read).problems()
        if problems:
            lines.append(problems)
        encoder = self.manifest.encoder
        note = self.extra.get("encoder_note")
        lines.append(f"Encoded by {encoder.describe()}" + (f" ({note})." if note else "."))
        if self.partitions_resumed:
            lines.append(f"Resumed: {counted(self.partitions_resumed, 'partition')} already done.")
        lines.append(f"-> {self.out}")
        return "\n".join(lines)


# --- one partition ------------------------------------------------------------------------


def _shard_partition_task(
    tokenizer_path: str,
    info: TokenizerInfo,
    config: ShardConfig,
    out: str,
    encoder: str,
    check_fraction: float,
    writes: WriteBehind | None,
    job: Corpus,
) -> PartitionRecord:
    """Shard ``job``'s one partition (``Corpus.for_partition``)."""
    return shard_partition(
        job,
        job.partitions[0],
        tokenizer_path,
        info,
        config,
        out,
        encoder,
        check_fraction,
        writes=writes,
    )


def shard_partition(
    corpus: Corpus,
    partition: Partition,
    tokenizer_path: str,
    info: TokenizerInfo,
    config: ShardConfig,
    out: str,
    encoder: str = "auto",
    check_fraction: float = CHECK_FRACTION,
    *,
    writes: WriteBehind | None = None,
) -> PartitionRecord:
    """Read, tokenise, pack, mask and write one partition; return its record.

    ``info`` is the tokenizer's as ``load_tokenizer`` resolved it where the run started
    (the roles may come from files beside the tokenizer that a worker cannot see); the
    worker loads only the tokenizer.json at ``tokenizer_path``. ``encoder`` is an
    ``rbprep.encoding.ENCODER_CHOICES``; where the fast encoder is used, the first unit
    of each split and ``check_fraction`` of the others (``encoding.sample_units``) are
    re-encoded by the reference, and a difference raises ``EncoderMismatch`` before
    anything is written.

    Writes the files of ``config.format``'s sink (Arrow: ``out/{train,valid}/shard-
    NNNNN.arrow``; a split with no rows gets no file) and then the marker
    ``out/.parts/NNNNN.json`` holding the returned record, less its ``seconds``. With
    ``writes``, those files are queued there and may not be written yet on return
    (``WriteBehind.wait``); without, they are.
    """
    work = work_for(tokenizer_path, info, encoder)
    sink = sink_for(config, info)
    clock = StageClock()
    stats = ReadStats()
    results = run_pipeline(work, corpus, partition, config, check_fraction, stats, clock)
    out_dir = Location(out)
    files: list[tuple[Location, Any]] = []  # (where, bytes): the sink's, then the marker
    splits = {}
    for split in SPLITS:
        result = results.pop(split)
        output = sink.split_output(partition.id, split, result)
        part = SplitPart(
            documents=result.text.documents,
            units=len(result.text.lines),
            content_tokens=result.content_tokens,
            rows=output.rows,
            tokens=output.tokens,
            masked_positions=0 if result.masks is None else len(result.masks.positions),
            length_histogram=output.length_histogram,
        )
        for name, data in output.files:
            files.append((out_dir.child(name), data))
            part.files.append(PartFile(name, _size(data), hashlib.sha256(data).hexdigest()))
        splits[split] = part
        clock.lap("write")
    record = PartitionRecord(
        partition=partition.id,
        read=stats.as_dict(),
        encoder=work.encoder.id.name,
        check_fraction=None if work.checker is None else check_fraction,
        splits=splits,
    )
    files.append((out_dir.child(f"{_PARTS}/{partition.id:05d}.json"), json_bytes(record.to_json())))
    if writes is None:
        for location, data in files:
            location.write_atomically(data)
    else:
        writes.submit(files)
    clock.lap("write")  # the files' time (or the wait for a place in the queue)
    record.seconds = clock.seconds
    return record


def _size(data: Any) -> int:
    """The size of bytes or a pyarrow Buffer."""
    return data.size if hasattr(data, "size") else len(data)


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
    encoder: str = "auto",
    check_fraction: float = CHECK_FRACTION,
) -> ShardSummary:
    """Shard ``corpus`` with ``tokenizer`` into ``out`` (DESIGN §5-7).

    ``workers`` processes run partitions (default: all cores), or the Dask cluster at
    ``scheduler`` (``tcp://HOST:PORT``) does, its workers reading the inputs and
    writing to ``out`` (a path they all reach); the output is the same either way.
    ``resume`` finishes an interrupted run, byte-identical to an uninterrupted one;
    ``force`` replaces an existing dataset. A second run on the same ``out`` while one
    is live is refused. ``encoder`` (``auto``, ``fast``, ``reference``) chooses who
    encodes, never what the ids are (``rbprep.encoding``): where a partition's sample
    shows the fast encoder disagreeing, the run warns, goes on with the reference, and
    redoes the partitions the fast one wrote. ``check_fraction`` (0-1) is the share of
    each partition's units the reference re-encodes for that (the first of each split
    always); the manifest records the smallest any partition was checked with.
    """
    config.check()
    if not 0.0 <= check_fraction <= 1.0:
        raise RbprepError(f"--check-fraction must be in 0..1, got {check_fraction}")
    if workers is not None and workers < 1:
        raise RbprepError(f"--workers must be 1 or more, got {workers}")
    check_output_directory(out)
    workers = workers or os.cpu_count() or 1
    if scheduler is None and workers <= THREADS_PER_PROCESS:
        kernels_warming()  # the tasks will run in this process
    if not isinstance(corpus, Corpus):
        corpus = open_corpus(corpus)
    loading = fast_encoder_loading(tokenizer, encoder)
    loaded = (
        load_tokenizer(tokenizer)
        if loading is None
        else load_tokenizer(tokenizer, loading.data, loading.config)
    )
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
    # Tasks that run in this process queue their files to one writer thread and go on;
    # a worker process or a Dask worker writes its own before the task returns.
    in_process = scheduler is None and workers <= THREADS_PER_PROCESS
    with (
        _locked(out_dir),
        WriteBehind() if in_process else contextlib.nullcontext() as writes,
    ):
        run_state = _run_state(corpus, info, config)
        sink = sink_for(config, info)
        done = _prepare(out_dir, run_state, sink, resume=resume, force=force)
        out_dir.child("tokenizer.json").write_atomically(Location(info.path).read_bytes())
        records = _intact_records(out_dir, done)
        # Tasks read the dataset's own copy of the tokenizer: on a cluster it is in the
        # shared output location, where every worker can reach it.
        tokenizer_copy = str(out_dir.child("tokenizer.json"))
        work = make_work(tokenizer_copy, info, encoder, reference=loaded[0], loading=loading)
        del loading  # its parsed JSON: tens of MB the run no longer needs
        fallback = Fallback("reference" if work.checker is None else "fast", work.not_fast)
        tokenizer_work[(info.sha256, fallback.encoder)] = work
        encoder_id = work.encoder.id
        while True:
            # Partitions a resumed run's other encoder wrote are redone by this one, so
            # the manifest names the encoder of every shard.
            todo = [
                p
                for p in corpus.partitions
                if p.id not in records or records[p.id].encoder != encoder_id.name
            ]
            # Each task gets its partition's files only (Corpus.for_partition): what is
            # sent to a worker process or the cluster stays small for any corpus.
            task = functools.partial(
                _shard_partition_task,
                tokenizer_copy,
                info,
                config,
                str(out_dir),
                fallback.encoder,
                check_fraction,
                writes,
            )
            jobs = [corpus.for_partition(partition) for partition in todo]
            try:
                with ByteProgress("shard", sum(p.size for p in todo), enabled=progress) as bar:
                    for job, record in run_tasks(task, jobs, workers=workers, scheduler=scheduler):
                        records[job.partitions[0].id] = record
                        bar.update(job.partitions[0].size)
                break
            except EncoderMismatch as mismatch:
                written = sum(r.encoder == encoder_id.name for r in records.values())
                fallback.to_reference(
                    mismatch,
                    f"encoding with {REFERENCE_NAME} from now on, and redoing the "
                    f"{counted(written, 'partition')} it wrote",
                )
                encoder_id = work_for(tokenizer_copy, info, fallback.encoder).encoder.id
        if writes is not None:
            writes.wait()  # the manifest comes last, once every shard is on disk
        ordered = [records[p.id] for p in corpus.partitions]
        if not any(part.documents for r in ordered for part in r.splits.values()):
            _clear(out_dir, sink)  # nothing to resume: the next run starts afresh
            raise RbprepError(
                f"the corpus holds no text: {counted(len(corpus.files), 'readable file')}, "
                f"no document; nothing written to {out_dir}"
            )
        joined = sink.finish(out_dir, ordered)
        manifest = _manifest(corpus, info, config, ordered, encoder_id, sink, joined)
        write_json_atomically(manifest.to_json(), out_dir.child(MANIFEST))
        sink.finished(out_dir)
    seconds = time.perf_counter() - started
    return ShardSummary(
        out=str(out_dir),
        manifest=manifest,
        partitions=len(corpus.partitions),
        partitions_resumed=sum(records[p].seconds is None for p in done),
        seconds=round(seconds, 3),
        text_bytes=manifest.totals.read["text_bytes"],
        extra={
            "encoder": encoder_id.as_dict(),
            "encoder_note": fallback.note,
            "kernels": kernels_in_use(),
            "stage_seconds": {
                stage: round(sum((r.seconds or {}).get(stage, 0.0) for r in ordered), 3)
                for stage in STAGES
            },
        },
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
        "parameters": asdict(config.parameters()),
        "tokenizer_sha256": info.sha256,
        "partition_size": corpus.partition_size,
        "files": [file.path for file in corpus.files],
        "partitions": [
            [[piece.file, piece.start, piece.end] for piece in p.pieces] for p in corpus.partitions
        ],
    }


def _prepare(
    out_dir: Location, run_state: dict[str, Any], sink: Sink, *, resume: bool, force: bool
) -> set[int]:
    """Make ``out_dir`` ready; return the ids of partitions already done (resume)."""
    run_file, manifest = out_dir.child(_RUN), out_dir.child(MANIFEST)
    previous = read_json(run_file) if run_file.exists() else None
    complete = manifest.exists()
    others = [name for name in out_dir.entries() if name != _LOCK]
    if force:
        _clear(out_dir, sink)
    elif resume and previous is not None:
        if _as_now(previous) != run_state:
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
    for name in (*sink.folders, _PARTS):
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


def _as_now(run_state: dict[str, Any]) -> dict[str, Any]:
    """A run state as this version writes it: one written before masking modes has no
    ``masking`` and no ``max_predictions`` among its parameters (static, and the cap its
    options give)."""
    parameters = run_state.get("parameters")
    if not isinstance(parameters, dict) or "masking" in parameters:
        return run_state
    try:
        config = ShardConfig(**{**parameters, "masking": "static"})
    except TypeError:
        return run_state  # not a run state this version can read: it will not match
    return {**run_state, "parameters": asdict(config.parameters())}


def _clear(out_dir: Location, sink: Sink) -> None:
    """Delete what a run writes in ``out_dir`` (the lock aside): any format's, so that
    ``--force`` with another ``--format`` leaves nothing of the dataset it replaces."""
    others = [name for f in FORMATS for name in (*sink_class(f).folders, *sink_class(f).outputs)]
    for name in dict.fromkeys((*others, _PARTS, MANIFEST, _RUN, "tokenizer.json")):
        out_dir.child(name).delete()


def _intact_records(out_dir: Location, done: set[int]) -> dict[int, PartitionRecord]:
    """The records of the partitions a resumed run may keep: those whose every file is
    there with the size and sha256 its record names. Any other is redone, with a
    warning: a finished partition is never taken on trust."""
    records = {}
    for partition in sorted(done):
        marker = out_dir.child(f"{_PARTS}/{partition:05d}.json")
        try:
            record = PartitionRecord.from_json(read_json(marker))
            problem = next(
                (
                    f"{file.file} is missing or damaged (its size or sha256 is not its record's)"
                    for file in record.files()
                    if not _file_matches(out_dir.child(file.file), file)
                ),
                None,
            )
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            problem = f"its record {marker} is unreadable"
        if problem is None:
            records[partition] = record
        else:
            logger.warning(
                "%s: partition %d was done, but %s; redoing it",
                out_dir,
                partition,
                problem,
            )
    return records


def _file_matches(location: Location, file: PartFile) -> bool:
    return (
        location.kind() == "file"
        and location.size() == file.bytes
        and location.sha256() == file.sha256
    )


def _checked_fraction(records: list[PartitionRecord]) -> float | None:
    """The smallest share of units any partition's sample re-encoded with the reference
    (a resumed run may have changed it); None where the reference encoded everything."""
    fractions = [
        record.check_fraction
        for record in records
        if record.encoder != REFERENCE_NAME and record.check_fraction is not None
    ]
    return min(fractions) if fractions else None


def _manifest(
    corpus: Corpus,
    info: TokenizerInfo,
    config: ShardConfig,
    records: list[PartitionRecord],
    encoder: EncoderId,
    sink: Sink,
    joined: dict[str, list[FileRecord]],
) -> Manifest:
    """The dataset's description: parameters, tokenizer, files and totals (no timings,
    so the same corpus and parameters always give the same manifest)."""
    read = ReadStats()
    corpus.count_skipped(read)
    splits: dict[str, SplitRecord] = {}
    for split in SPLITS:
        parts = [record.splits[split] for record in records]
        histogram: dict[str, int] = {}
        for part in parts:
            for bucket, count in part.length_histogram.items():
                histogram[bucket] = histogram.get(bucket, 0) + count
        shards = [
            ShardRecord(
                file=part.files[0].file,
                partition=record.partition,
                rows=part.rows,
                tokens=part.tokens,
                bytes=part.files[0].bytes,
                sha256=part.files[0].sha256,
            )
            for record, part in zip(records, parts, strict=True)
            if sink.partition_shards and part.rows
        ]
        files = joined.get(split, [])
        splits[split] = SplitRecord(
            documents=sum(part.documents for part in parts),
            units=sum(part.units for part in parts),
            content_tokens=sum(part.content_tokens for part in parts),
            rows=sum(part.rows for part in parts),
            tokens=sum(part.tokens for part in parts),
            masked_positions=sum(part.masked_positions for part in parts),
            bytes=sum(shard.bytes for shard in shards) + sum(file.bytes for file in files),
            length_histogram=histogram,
            shards=shards,
            files=files,
        )
    for record in records:
        read.merge(ReadStats(**record.read))
    rows = sum(splits[s].rows for s in SPLITS)
    tokens = sum(splits[s].tokens for s in SPLITS)
    # Megatron's sequences are documents, not rows of seq_len: nothing is padded.
    slots = rows * config.seq_len if config.rows else tokens
    stored = sum(splits[s].bytes for s in SPLITS)
    return Manifest(
        rbprep_version=__version__,
        parameters=config.parameters(),
        tokenizer=TokenizerRecord(
            file="tokenizer.json",
            sha256=info.sha256,
            vocab_size=info.vocab_size,
            cls_id=info.cls_id,
            sep_id=info.sep_id,
            pad_id=info.pad_id,
            mask_id=info.mask_id,
            unk_id=info.unk_id,
            special_ids=list(info.special_ids),
            word_prefix=info.word_prefix,
            continuation_prefix=info.continuation_prefix,
        ),
        encoder=EncoderRecord(encoder.name, encoder.version, _checked_fraction(records)),
        corpus=CorpusRecord(
            files=[file.path for file in corpus.files],
            text_field=corpus.options.text_field,
            bytes=corpus.size,
            partition_size=corpus.partition_size,
            partitions=len(corpus.partitions),
        ),
        splits=splits,
        totals=Totals(
            documents=sum(splits[s].documents for s in SPLITS),
            units=sum(splits[s].units for s in SPLITS),
            content_tokens=sum(splits[s].content_tokens for s in SPLITS),
            rows=rows,
            tokens=tokens,
            slots=slots,
            padding_tokens=slots - tokens,
            padding_share=(slots - tokens) / slots if slots else 0.0,
            bytes=stored,
            bytes_per_token=stored / tokens if tokens else 0.0,
            read=read.as_dict(),
        ),
    )
