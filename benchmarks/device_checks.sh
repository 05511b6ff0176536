#!/usr/bin/env bash
# Every GPU check in one prepared run, for a session that is lent a GPU (device tool):
#   run(command="bash benchmarks/device_checks.sh", timeout_s=480)
# The device's python3 holds a CUDA build of torch (and torchvision); wideflat runs from the
# tree. About 4-6 minutes on one H100/H200. Output also goes to $OUT/device-checks.log.
set -u
export PYTHONPATH="$PWD" PYTHONUNBUFFERED=1 MPLBACKEND=Agg
log="${OUT:-/tmp}/device-checks.log"
{
  python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
  echo "== GPU tests (engines on CUDA, CPU->CUDA state, on-device augmentation, AutoAugment,"
  echo "   a matched-error run with recomputed BatchNorm statistics and kept weights)"
  timeout 180 python3 -m pytest -q -p no:cacheprovider tests/gpu tests/data/test_data_augment.py
  echo "== per-step time vs SGD (target: rSGD x3 vmap <= 1.3x SGD for SmallConvNet)"
  timeout 150 python3 benchmarks/replicas.py --device cuda --rounds 7 --batch 128
  echo "== per-gradient overhead of eSGD (L=5) and rSGD (y=3) on the GPU"
  timeout 120 python3 benchmarks/optim_overhead.py --device cuda --rounds 15
  echo "== local energy: vmap-batched perturbations vs a loop, on the GPU"
  timeout 120 python3 benchmarks/flatness.py --quick
  echo "== Hessian-vector product / gradient on the GPU (target <= 2.5)"
  timeout 90 python3 benchmarks/hessian.py --device cuda --rounds 7
  echo "== committee engine: training FLOP rate / sgemm on the GPU (target >= 0.5)"
  timeout 90 python3 benchmarks/committee_batching.py --device cuda --reps 5
} 2>&1 | tee "$log"
