"""``compare-tokenizers``: tokenizers measured side by side on the user's own text.

``compare_tokenizers(corpus, tokenizers, CompareConfig(...))`` returns a ``Comparison``
(its JSON, terminal report, Markdown and plots). Metrics: ``metrics.py``; how pieces are
spelled: ``pieces.py``; the round trip without decoding: ``roundtrip.py``; reports:
``report.py``; plots (matplotlib, imported only there): ``plots.py``. Definitions with
formulas: docs/compare.md.
"""

from rbprep.compare.comparison import (
    CompareConfig,
    Comparison,
    compare_tokenizers,
    train_vocab_tokenizers,
)

__all__ = ["CompareConfig", "Comparison", "compare_tokenizers", "train_vocab_tokenizers"]
