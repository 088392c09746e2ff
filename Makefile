# Every install step lives here, so a fresh clone needs only Python 3.10+ and make.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_OUT ?= demo-out

.PHONY: install lint test test-fast demo bench readme clean

install: $(VENV)/.installed

# constraints.txt pins torch to the local CPU wheel whenever an extra pulls it in.
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	# MosaicML Streaming, the MDS reader of the tests: without its pins (numpy<2.2,
	# transformers<5), which its reader does not need; tests lend it a torchvision stub.
	$(BIN)/pip install --quiet --no-deps mosaicml-streaming==0.13.0
	# The kernels compiled ahead of time (rbprep.aot); where that fails, numba's JIT runs them.
	-$(BIN)/python -m rbprep.aot
	touch $@

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The full suite, slow end-to-end cases included (CI runs this).
test: lint
	$(BIN)/pytest

# Everything but the slow end-to-end cases, for quick iterations.
test-fast: install
	$(BIN)/pytest -m "not slow"

demo: install
	$(BIN)/rbprep demo --out $(DEMO_OUT)

# Each script prints its figures and appends them to benchmarks/results/ (minutes each).
bench: install
	$(BIN)/python benchmarks/train_vocab.py
	$(BIN)/python benchmarks/shard.py
	$(BIN)/python benchmarks/shard_scaling.py
	$(BIN)/python benchmarks/compare_tokenizers.py
	$(BIN)/python benchmarks/pretrain.py
	$(BIN)/python benchmarks/open_dataset.py
	$(BIN)/python benchmarks/mds_writer.py
	@echo "benchmarks/reader.py and torch_dataset.py take datasets of 0.5 GB of text or more, and"
	@echo "shard_ab.py and shard_formats.py a --tokenizer: run them by hand (benchmarks/README.md)"
	$(BIN)/python benchmarks/long_line.py

# Rewrite the README's command reference from --help.
readme: install
	RBPREP_UPDATE_README=1 $(BIN)/pytest -q tests/test_readme.py -k command_reference

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache .ruff_cache .hypothesis
