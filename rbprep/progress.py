"""Progress bars (tqdm, on stderr) and warnings that print cleanly around them."""

from __future__ import annotations

import logging
import sys
from types import TracebackType
from typing import Any

_MAX_WARNINGS = 20


def _tqdm() -> Any:
    """tqdm's class, imported when first needed: the import takes 25 ms of every run
    (its version lookup), and a quiet run without warnings never needs it."""
    from tqdm import tqdm

    return tqdm


class ByteProgress:
    """A tqdm bar counting bytes, or nothing when ``enabled`` is false."""

    def __init__(self, description: str, total: int | None, *, enabled: bool):
        self._bar = (
            _tqdm()(
                total=total,
                desc=description,
                unit="B",
                unit_scale=True,
                unit_divisor=1000,
                file=sys.stderr,
                dynamic_ncols=True,
                leave=False,
            )
            if enabled
            else None
        )

    def update(self, num_bytes: int) -> None:
        if self._bar is not None and num_bytes:
            self._bar.update(num_bytes)

    def __enter__(self) -> ByteProgress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.close()


class WarningHandler(logging.Handler):
    """Print rbprep's warnings as ``warning: ...`` lines on stderr, through tqdm so
    bars stay intact; after the first few, one line says the rest are counted only."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        if self.count <= _MAX_WARNINGS:
            _tqdm().write(f"warning: {record.getMessage()}", file=sys.stderr)
        elif self.count == _MAX_WARNINGS + 1:
            _tqdm().write(
                "warning: more warnings follow; they are counted in the summary only",
                file=sys.stderr,
            )
