"""``torchvision.transforms.functional.to_tensor``: imported by ``streaming.vision.base``."""

from __future__ import annotations

from typing import Any


def to_tensor(pic: Any) -> Any:
    """Never called by rbprep's tests."""
    raise NotImplementedError("torchvision stub (tests/stubs): to_tensor is not real")
