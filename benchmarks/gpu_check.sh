#!/usr/bin/env bash
# The trainer on a CUDA machine, in one go: the CUDA tests of tests/test_train.py and
# tests/test_attention.py, then benchmarks/pretrain.py (the base preset, eager and
# compiled; row attention, document attention, DOC-SENTENCES token budgets) on the
# built-in corpus.
# Needs a python3 that has torch (CUDA), tokenizers, pyarrow, numba, click, tqdm, pytest
# and hypothesis; installs nothing. Every step runs even if one before it failed.
#
#     bash benchmarks/gpu_check.sh [OUT_DIR]     # logs and pretrain.jsonl into OUT_DIR
set -uo pipefail
out=$(realpath -m "${1:-gpu-check}")
python=${PYTHON:-python3}
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
mkdir -p "$out"
work=$(mktemp -d)
status=0

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
# No CUDA device for torch: the tests below would all be skipped, so that is a failure.
"$python" -c "import torch, tokenizers, pyarrow, numba; print('torch', torch.__version__, \
'tokenizers', tokenizers.__version__, 'pyarrow', pyarrow.__version__, 'numba', numba.__version__); \
assert torch.cuda.is_available(), 'torch sees no CUDA device'" || exit 1

echo "== CUDA tests"
"$python" -m pytest -q -s -p no:cacheprovider tests/test_train.py tests/test_attention.py -k cuda \
    2>&1 | tee "$out/tests.log" || status=1

echo "== dataset: the built-in corpus, seq 512, dup 10, an 8K BPE"
"$python" -c "
import sys; from pathlib import Path
sys.path.insert(0, 'benchmarks')
from pretrain import default_dataset
print(default_dataset(Path('$work')))
" || status=1

for compile in "" "--compile"; do
    echo "== pretrain.py --model base --device cuda --micro-batch 32 $compile"
    "$python" benchmarks/pretrain.py "$work/data" --model base --device cuda --micro-batch 32 \
        --steps 40 --log-every 5 $compile --results "$out/pretrain.jsonl" \
        2>&1 | tee -a "$out/bench.log" || status=1
done

# The three cases of the README's table, compiled: row attention (above), document
# attention unpadded on the same FULL-SENTENCES rows, and DOC-SENTENCES rows under a
# token budget (micro-batches of 32 x 512 real tokens).
echo "== pretrain.py --attention document --compile"
"$python" benchmarks/pretrain.py "$work/data" --model base --device cuda --micro-batch 32 \
    --steps 40 --log-every 5 --compile --attention document --results "$out/pretrain.jsonl" \
    2>&1 | tee -a "$out/bench.log" || status=1
echo "== pretrain.py --doc-sentences --batch-tokens 16384 --compile"
"$python" benchmarks/pretrain.py --doc-sentences --model base --device cuda --micro-batch 32 \
    --batch-tokens 16384 --steps 40 --log-every 5 --compile --results "$out/pretrain.jsonl" \
    2>&1 | tee -a "$out/bench.log" || status=1
rm -rf "$work"
exit $status
