"""``torchvision.transforms``, holding only :mod:`.functional`."""

from torchvision.transforms import functional

__all__ = ["functional"]
