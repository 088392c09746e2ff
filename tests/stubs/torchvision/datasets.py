"""``torchvision.datasets.VisionDataset``: imported by ``streaming.vision.base`` as a base
class of ``StreamingVisionDataset``."""

from __future__ import annotations

from typing import Any

import torch.utils.data


class VisionDataset(torch.utils.data.Dataset):
    """Never constructed by rbprep's tests."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError("torchvision stub (tests/stubs): VisionDataset is not real")
