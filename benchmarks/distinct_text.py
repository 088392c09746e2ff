"""More distinct text than the dev corpus holds, for measurements whose cost grows with
the number of distinct words (``train-vocab``'s memory): ``--copies`` copies of a corpus's
``.txt`` files, copy ``k`` with its ASCII letters substituted by the ``k``-th seeded
permutation (copy 0 is the text itself).

A letter substitution keeps each copy's lines, documents, word lengths and word
frequencies (Zipf's law as in the text), and makes almost every word of one copy a word no
other copy has: a corpus ``copies`` times as large, with about ``copies`` times the
vocabulary, which linking the same files several times does not give. Non-ASCII text
(accents, other scripts) is left as it is, so use an English corpus::

    .venv/bin/python benchmarks/distinct_text.py ~/.cache/rbprep-dev-corpus/en /tmp/en3 --copies 3
"""

from __future__ import annotations

import argparse
import random
import string
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus", type=Path, help="a folder of .txt files")
    parser.add_argument("out", type=Path, help="the folder to write (created)")
    parser.add_argument("--copies", type=int, default=3, help="copies, the first unchanged (3)")
    args = parser.parse_args()
    files = sorted(args.corpus.rglob("*.txt"))
    args.out.mkdir(parents=True, exist_ok=False)
    for copy in range(args.copies):
        lower = list(string.ascii_lowercase)
        random.Random(copy).shuffle(lower)
        if copy == 0:
            lower = list(string.ascii_lowercase)
        shuffled = "".join(lower)
        table = str.maketrans(
            string.ascii_lowercase + string.ascii_uppercase, shuffled + shuffled.upper()
        )
        for file in files:
            text = file.read_text(encoding="utf-8")
            (args.out / f"{copy}-{file.name}").write_text(text.translate(table), encoding="utf-8")
    total = sum(p.stat().st_size for p in args.out.iterdir())
    print(f"{args.out}: {args.copies} copies of {len(files)} files, {total / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
