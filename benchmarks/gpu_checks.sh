#!/usr/bin/env bash
# The GPU checks and measurements the open issues name, as one script for a lent GPU machine
# (issues 11 and 13): the CUDA tests, batched groups against runs one by one, teacher speed per
# input size, and the paper study (3 seeds) with workers and batched groups. Results go to
# ${OUT:-/tmp/gpu-checks}; each step has its own time limit, so a slow step cannot eat the budget.
# Usage, from the repository root with the venv installed:  bash benchmarks/gpu_checks.sh
set -uo pipefail
OUT=${OUT:-/tmp/gpu-checks}
PY=${PY:-.venv/bin/python}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv > "$OUT/gpu.txt" 2>&1
step() {  # step NAME SECONDS COMMAND...
    local name=$1 limit=$2
    shift 2
    echo "== $name (limit ${limit}s)" | tee -a "$OUT/steps.txt"
    local start=$SECONDS
    timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
    echo "   exit $? after $((SECONDS - start))s" | tee -a "$OUT/steps.txt"
}
step cuda_tests 120 "$PY" -m pytest -q tests/training/test_grouped.py -k cuda -p no:cacheprovider
step batched 120 "$PY" benchmarks/batched_speed.py --members 9 --images 45000
step teacher_sizes 120 "$PY" benchmarks/teacher_speed.py --arch resnet50 --sizes 224 160 128 96 --batch 128 --steps 10
step teacher_vgg 90 "$PY" benchmarks/teacher_speed.py --arch vgg16 --sizes 224 128 --batch 128 --steps 10
step paper_study 300 "$PY" benchmarks/parallel_speed.py --workdir "$OUT/paper" --epochs 1 3 --paths sequential batched
tail -n 3 "$OUT"/*.log
# Issue 21: the CIFAR KD zoo's training speed, and a 240-epoch resnet32x4 -> resnet8x4 KD run
# projected from 3 epochs of the real loop on full-size generated CIFAR-100 (target: < 15 min).
step zoo_speed 120 "$PY" benchmarks/zoo_speed.py --steps 10 --project
step kd_projection 300 "$PY" benchmarks/kd_projection.py --workdir "$OUT/kd" --epochs 3 --models resnet8x4_kd
tail -n 8 "$OUT"/zoo_speed.log "$OUT"/kd_projection.log
