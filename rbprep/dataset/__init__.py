"""The on-disk format of sharded datasets, shared by ``shard`` and the trainer: schema,
atomic writes, the reader (``open_dataset``) and ``verify``."""

from rbprep.dataset.reader import Dataset, open_dataset

__all__ = ["Dataset", "open_dataset"]
