"""``shard``: the corpus tokenised, packed, masked and written (DESIGN §5-7).

- ``config``: ``ShardConfig``, the options that decide the output;
- ``pipeline``: a partition read, encoded, packed and masked;
- ``sinks``: a partition's result as files of one format (Arrow, Megatron, MDS);
- ``run``: ``shard`` itself: lock, resume, executors, the manifest.
"""

from rbprep.sharding.config import COMPRESSIONS, DEFAULT_DUP, FORMATS, MASKINGS, MODES, ShardConfig
from rbprep.sharding.pipeline import STAGES, partition_rows
from rbprep.sharding.run import ShardSummary, shard, shard_partition

__all__ = [
    "COMPRESSIONS",
    "DEFAULT_DUP",
    "FORMATS",
    "MASKINGS",
    "MODES",
    "STAGES",
    "ShardConfig",
    "ShardSummary",
    "partition_rows",
    "shard",
    "shard_partition",
]
