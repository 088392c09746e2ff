"""rbprep's MDS writer (``rbprep.dataset.mds.shard_bytes``) against MosaicML Streaming's
own ``MDSWriter``, writing the same packed rows (flat uint32 ids and int64 offsets, as the
sharding pipeline holds them) to one uncompressed shard and its ``index.json``.

The evidence for writing the documented format ourselves (README, "Use with your
trainer"). ``--repeats`` interleaved runs of each, median; the two outputs are compared
byte for byte. It needs mosaicml-streaming (``make install`` puts it in the venv; the
tests' torchvision stub is lent where torchvision is absent). Appends one JSON line::

    .venv/bin/python benchmarks/mds_writer.py --rows 200000 --repeats 5
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import ROOT, append_record, record_header

from rbprep.dataset import mds

DEFAULT_RESULTS = Path(__file__).resolve().parent / "results" / "mds_writer.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000, help="packed rows (200000)")
    parser.add_argument("--mean-len", type=int, default=500, help="mean row length (500)")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved runs (5)")
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="JSON lines file")
    args = parser.parse_args()
    if importlib.util.find_spec("torchvision") is None:
        sys.path.insert(0, str(ROOT / "tests" / "stubs"))
    from streaming import MDSWriter

    rng = np.random.default_rng(0)
    lengths = rng.integers(args.mean_len - 10, args.mean_len + 13, args.rows)
    offsets = np.concatenate(([0], np.cumsum(lengths))).astype(np.int64)
    tokens = rng.integers(0, 50265, offsets[-1], dtype=np.uint32)
    dtype = np.dtype(np.uint16)
    columns = dict(zip(mds.COLUMN_NAMES, mds.column_encodings(dtype), strict=True))

    def rbprep_writer(out: Path) -> None:
        data = mds.shard_bytes(offsets, tokens, dtype)
        (out / "shard.00000.mds").write_bytes(data)
        index = mds.index_json([mds.ShardInfo("shard.00000.mds", len(data), args.rows)], dtype)
        (out / mds.INDEX_NAME).write_text(mds.index_text(index))

    def streaming_writer(out: Path) -> None:
        with MDSWriter(columns=columns, out=str(out), size_limit=None) as writer:
            for i in range(args.rows):
                row = tokens[offsets[i] : offsets[i + 1]].astype(dtype)
                writer.write({"input_ids": row, "length": len(row)})

    writers = {"rbprep": rbprep_writer, "streaming": streaming_writer}
    seconds: dict[str, list[float]] = {name: [] for name in writers}
    identical = True
    with tempfile.TemporaryDirectory(prefix="rbprep-mds-") as work:
        for repeat in range(args.repeats):
            outs = {}
            for name, write in writers.items():
                outs[name] = Path(work, f"{name}-{repeat}")
                outs[name].mkdir()
                started = time.perf_counter()
                write(outs[name])
                seconds[name].append(time.perf_counter() - started)
            for file in ("shard.00000.mds", mds.INDEX_NAME):
                identical &= (outs["rbprep"] / file).read_bytes() == (
                    outs["streaming"] / file
                ).read_bytes()
            for out in outs.values():
                for file in out.iterdir():
                    file.unlink()
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    ratio = medians["streaming"] / medians["rbprep"]
    print(
        f"{args.rows:,} rows, {int(offsets[-1]):,} tokens: rbprep {medians['rbprep']:.3f} s, "
        f"streaming's MDSWriter {medians['streaming']:.3f} s ({ratio:.1f}x); "
        f"byte-identical: {identical}"
    )
    append_record(
        args.results,
        {
            **record_header(),
            "rows": args.rows,
            "tokens": int(offsets[-1]),
            "seconds": seconds,
            "median_ratio": round(ratio, 3),
            "identical": identical,
        },
    )


if __name__ == "__main__":
    main()
