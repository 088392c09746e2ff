"""Reading rbprep's Megatron and MDS outputs with their consumers' own readers, for
tests/test_formats.py and end-to-end tests of ``shard --format megatron|mds``.

Each helper skips the calling test (``pytest.importorskip``) where the consumer's package
is not installed.

mosaicml-streaming's package import loads ``streaming.vision``, which needs torchvision;
torchvision's wheels do not load against a CPU build of torch, so the tests install
neither and :func:`import_streaming` lends streaming a stub (tests/stubs/torchvision) for
the length of its import, leaving neither the stub nor its path behind.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

STUBS = str(Path(__file__).parent / "stubs")


def import_streaming() -> ModuleType:
    """``import streaming``, with the torchvision stub where torchvision is absent."""
    if "streaming" in sys.modules or importlib.util.find_spec("torchvision") is not None:
        return pytest.importorskip("streaming")
    _ask_transformers_about_torchvision()
    sys.path.insert(0, STUBS)
    try:
        return pytest.importorskip("streaming")
    finally:
        sys.path.remove(STUBS)
        # streaming.vision keeps the two names it took; nothing else may find the stub
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]
        importlib.invalidate_caches()


def _ask_transformers_about_torchvision() -> None:
    """streaming imports transformers, which caches whether torchvision is installed the
    first time it is asked (``is_torchvision_available`` is an ``lru_cache``): ask before
    the stub can be found, so the rest of the test session sees the truth."""
    if importlib.util.find_spec("transformers") is None:
        return
    import_utils = importlib.import_module("transformers.utils.import_utils")
    for name in ("is_torchvision_available", "is_torchvision_v2_available"):
        check = getattr(import_utils, name, None)
        if check is not None:
            check()


def streaming_dataset(
    local: str | os.PathLike, lock_dir: str | os.PathLike | None = None, **options: Any
) -> Any:
    """A ``streaming.StreamingDataset`` over the MDS dataset in ``local`` (the directory
    of an ``index.json``), reading local files only, one sample per batch, in order;
    ``options`` go to StreamingDataset.

    What makes it reliable in tests (streaming 0.13):
    - ``remote=None``: streaming then never copies or evicts files, and refuses a
      ``local`` directory shared with another live dataset only when that one has a
      remote; so two datasets may read one directory in turn.
    - Each dataset takes a number ``N`` that no live dataset of any process on the machine
      holds, for its shared memory ``/dev/shm/NNNNNN_*`` (released at interpreter exit)
      and, once iterated, its file locks ``NNNNNN_*_filelock`` in the temporary directory
      (never removed). Leftovers of other runs only make later datasets take a higher
      ``N``. ``lock_dir`` (a test's ``tmp_path``) puts the file locks there instead of
      littering ``/tmp``; the shared memory still keeps numbers apart across processes.
    - ``streaming.base.util.clean_stale_shared_memory()`` is not called: it unlinks every
      dataset's shared memory on the machine, including other live processes'.
    - A distributed environment (``WORLD_SIZE``/``RANK`` set) would change what each
      rank reads; the tests run without one.
    """
    streaming = import_streaming()
    options = {"batch_size": 1, "shuffle": False, **options}
    saved = tempfile.tempdir
    if lock_dir is not None:
        tempfile.tempdir = str(lock_dir)  # streaming keeps gettempdir() from its __init__
    try:
        return streaming.StreamingDataset(local=str(local), remote=None, **options)
    finally:
        tempfile.tempdir = saved


def mds_rows(
    local: str | os.PathLike, lock_dir: str | os.PathLike | None = None
) -> list[dict[str, Any]]:
    """Every sample of the MDS dataset in ``local``, in order, read by StreamingDataset
    twice (by index, then by iterating it), checked equal. Its file locks go to
    ``lock_dir``, else to a temporary directory removed afterwards."""
    if lock_dir is None:
        with tempfile.TemporaryDirectory(prefix="rbprep-streaming-locks-") as locks:
            return mds_rows(local, locks)
    dataset = streaming_dataset(local, lock_dir)
    by_index = [dataset[i] for i in range(dataset.num_samples)]
    iterated = list(dataset)
    assert len(iterated) == len(by_index)
    for a, b in zip(by_index, iterated, strict=True):
        assert a.keys() == b.keys()
        assert all(np.array_equal(a[key], b[key]) for key in a)
    return by_index


class MegatronTestTokenizer:
    """The attributes Megatron-Core's GPT dataset reads from a tokenizer. It has no pad
    token, so GPTDataset pads with -1 and leaves every id of the data as it is."""

    def __init__(self, vocab_size: int, eod: int) -> None:
        self.vocab_size = vocab_size
        self.eod = eod
        self.unique_identifiers = {"class": "rbprep-test", "vocab_size": vocab_size, "eod": eod}


def megatron_samples(
    prefix: str,
    seq_len: int,
    vocab_size: int,
    end_id: int,
    cache: str | os.PathLike | None = None,
    seed: int = 1234,
) -> list[np.ndarray]:
    """Build Megatron-Core's ``GPTDataset`` over the indexed dataset at ``prefix`` (all
    of it for training, one epoch) with ``BlendedMegatronDatasetBuilder``, on the CPU, and
    check every sample it serves: its ``tokens``/``labels`` are a window of ``seq_len + 1``
    ids of the dataset's sequences, concatenated in Megatron's document order, at the
    sample's offset. Returns the samples' windows, (seq_len + 1,) int64 each, in order.

    Megatron writes its sample index cache under ``cache`` (default: beside ``prefix``).
    """
    pytest.importorskip("megatron.core")
    from megatron.core.datasets.blended_megatron_dataset_builder import (
        BlendedMegatronDatasetBuilder,
    )
    from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    config = GPTDatasetConfig(
        random_seed=seed,
        sequence_length=seq_len,
        blend=([prefix], None),
        split="1,0,0",
        path_to_cache=str(cache if cache is not None else f"{prefix}-megatron-cache"),
        tokenizer=MegatronTestTokenizer(vocab_size, end_id),
        reset_position_ids=False,
        reset_attention_mask=False,
        eod_mask_loss=False,
    )
    train, valid, test = BlendedMegatronDatasetBuilder(
        GPTDataset, [None, None, None], lambda: True, config
    ).build()
    assert isinstance(train, GPTDataset) and valid is None and test is None
    indexed = IndexedDataset(prefix)
    sequences = [np.asarray(indexed[i], dtype=np.int64) for i in range(len(indexed))]
    # an epoch's document order is a permutation of the sequences (GPT splits by sequence)
    order = np.asarray(train.document_index)
    assert sorted(order.tolist()) == list(range(len(sequences)))
    stream = np.concatenate([sequences[i] for i in order] + [np.zeros(0, np.int64)])
    windows = []
    for i in range(len(train)):
        sample = train[i]
        start = int(train.shuffle_index[i]) * seq_len
        expected = stream[start : start + seq_len + 1]
        assert expected.size == seq_len + 1, "Megatron served a sample past the data"
        assert np.array_equal(sample["tokens"].numpy(), expected[:-1])
        assert np.array_equal(sample["labels"].numpy(), expected[1:])
        windows.append(expected)
    return windows
