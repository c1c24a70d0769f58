#!/usr/bin/env bash
# The prepared GPU check (docs/performance.md "On a GPU"), for a lent GPU machine whose python3 holds
# PyTorch with CUDA (nothing is installed: the source runs from src/). It prints the GPU, runs the CUDA
# side of the test suite against the CPU in float64 (tests/cuda, tests/train/test_device.py), then
# times 200 training steps at T = 100 per optimizer on the GPU beside the CPU, each in a fresh process
# (start-up included), the relu recurrence ours and torch's (cuDNN). Everything it prints also goes to
# ${OUT:-.}/gpu_check.txt. About 4 minutes (the C++ kernels compile first, once).
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"  # the image's python3 holds torch; PYTHON=.venv/bin/python runs it here
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" OMP_NUM_THREADS=1
out="${OUT:-.}/gpu_check.txt"
runs="$(mktemp -d)"
{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 || echo "nvidia-smi: not found"
  "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'sees', torch.cuda.device_count(), 'GPU(s)')"
  "$PY" -m pytest -q -p no:cacheprovider -o addopts="" -rs tests/cuda tests/train/test_device.py 2>&1 | tail -20
  # the relu recurrence: ours (plainrnn; eager ops on a GPU) and torch's (cuDNN on a GPU)
  for optimizer in path-sgd invariant-adam adam; do
    for run in cpu:plainrnn cuda:plainrnn cuda:torch; do
      device=${run%%:*} recurrence=${run##*:}
      start=$(date +%s.%N)
      "$PY" -m plainrnn.cli train --device "$device" --recurrence "$recurrence" --task adding --seq-len 100 \
        --steps 200 --eval-every 200 --optimizer "$optimizer" --lr 1e-5 --out "$runs" \
        --name "$device-$recurrence-$optimizer" --quiet 2>&1 | tail -1
      "$PY" -c "print('$device $recurrence $optimizer: 200 steps at T = 100, %.1f s with start-up' % ($(date +%s.%N) - $start))"
    done
  done
} 2>&1 | tee "$out"
