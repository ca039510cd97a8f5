#!/usr/bin/env bash
# The speed work's device check, for one CUDA GPU (written for an H200): run from the repository
# root in the installed environment, with a zju-vipa/CMI checkout in benchmarks/reference/CMI
# (its requirements on PYTHONPATH) and the CIFAR-10 JPEG copy extracted under data/ (see
# ../shared/data/README.md: data/cifar10-jpeg/{train,test}/<class>/*.jpg). Results go to
# benchmarks/results/ (and to $OUT when set). About 10 minutes on an H200.
set -euo pipefail
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
python -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda)'

# 1. Every method on both CIFAR pairs, eager and fast, at the published batches.
python benchmarks/harness.py --dataset cifar10 --pairs resnet34-resnet18 wrn40_2-wrn16_2 \
    --compute eager fast --windows 5 --name h200_cifar10

# 2. The reference's own DFQ round against ours, at the published batch.
python benchmarks/reference_round.py --reference benchmarks/reference/CMI --batch 256 \
    --compute fast --threads 8 --rounds 20 --name h200_reference_round

# 3. The quick protocol on the real CIFAR-10 images: a ResNet-34 teacher, then the methods.
snakemake --cores all --configfile benchmarks/gpu/quick_cifar10_jpeg.yaml \
    reports/cifar10_jpeg_table.md

if [[ -n "${OUT:-}" ]]; then
    cp benchmarks/results/h200_* reports/cifar10_jpeg_* "$OUT"/
fi
