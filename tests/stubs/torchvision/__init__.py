"""A stand-in for torchvision, for tests only: mosaicml-streaming's package import loads
``streaming.vision``, which imports two names from torchvision at module level. The
tests load this stub only where torchvision is not installed (tests/streaming_support.py)
and never use streaming's vision datasets; the names fail loudly if anything calls them.
"""

from torchvision import datasets, transforms

__all__ = ["datasets", "transforms"]
__version__ = "0.0.0+rbprep.stub"
