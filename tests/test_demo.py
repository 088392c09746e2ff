"""``rbprep demo`` end to end on the built-in corpus."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from tokenizers import Tokenizer

from rbprep.cli import main
from rbprep.dataset.verification import verify


@pytest.mark.slow
def test_demo_leaves_tokenizers_a_dataset_and_a_summary(tmp_path, monkeypatch, builtin_corpus):
    monkeypatch.setenv("RBPREP_CACHE_DIR", str(builtin_corpus.parent))
    result = CliRunner().invoke(main, ["demo", "--out", str(tmp_path / "demo"), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "Built-in corpus" in result.output and "Done in" in result.output
    summary = json.loads((tmp_path / "demo" / "vocab" / "train-vocab.json").read_text())
    assert {t["kind"]: t["vocab_size"] for t in summary["tokenizers"]} == {
        "bpe": 8000,
        "wordpiece": 8000,
    }
    verify(tmp_path / "demo" / "data")
    assert "[<mask>|" in result.output  # inspect's sample row, masks marked
    assert "fill-mask:" in result.output and "top 5:" in result.output
    assert "4. compare-tokenizers" in result.output
    assert (tmp_path / "demo" / "compare" / "compare.json").exists()
    assert (tmp_path / "demo" / "run" / "hf" / "model.safetensors").exists()
    for kind in ("bpe", "wordpiece"):
        tokenizer = Tokenizer.from_file(str(tmp_path / "demo" / "vocab" / kind / "tokenizer.json"))
        assert len(tokenizer.encode("Return the number of items in a container.").ids) > 5
