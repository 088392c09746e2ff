"""Human-readable byte sizes (``64MB``, ``500KB``, ``1.5GB``, ``2GiB`` or plain bytes) and
counts (``1 file``, ``1,204 files``)."""

from __future__ import annotations

import re

# Decimal units as disks and network speeds count them; binary units spelled with "i".
_UNITS = {
    "": 1,
    "B": 1,
    "K": 10**3,
    "KB": 10**3,
    "M": 10**6,
    "MB": 10**6,
    "G": 10**9,
    "GB": 10**9,
    "T": 10**12,
    "TB": 10**12,
    "KIB": 2**10,
    "MIB": 2**20,
    "GIB": 2**30,
    "TIB": 2**40,
}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([A-Za-z]*)\s*$")


def parse_size(text: str | int) -> int:
    """Return the number of bytes that ``text`` names (``"64MB"`` -> 64_000_000).

    KB/MB/GB/TB are powers of 1000, KiB/MiB/GiB/TiB powers of 1024; case is ignored.
    Raises ``ValueError`` with a message suitable for the user.
    """
    if isinstance(text, int):
        if text < 0:
            raise ValueError(f"size must not be negative: {text}")
        return text
    match = _SIZE_RE.match(text)
    unit = match.group(2).upper() if match else None
    if match is None or unit not in _UNITS:
        raise ValueError(f"{text!r} is not a size; write e.g. 64MB, 500KB, 1.5GB or 1048576")
    return int(float(match.group(1)) * _UNITS[unit])


def format_size(num_bytes: float) -> str:
    """Return ``num_bytes`` in the largest decimal unit that keeps it >= 1 (``"15.8 MB"``)."""
    if num_bytes < 1000:
        return f"{int(num_bytes)} B"
    for unit in ("KB", "MB", "GB"):
        num_bytes /= 1000
        if num_bytes < 1000:
            return f"{num_bytes:.1f} {unit}"
    return f"{num_bytes / 1000:.1f} TB"


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """``count`` with thousands separators and ``noun`` in its number: ``1 shard``,
    ``2,048 shards``; ``plural`` where adding "s" is wrong."""
    return f"{count:,} {noun if count == 1 else plural or noun + 's'}"
