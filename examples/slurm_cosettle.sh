#!/bin/bash
# Co-Settle on Kinetics-400 at the paper's global batch (512) with SLURM: N nodes x 8 GPUs,
# one torchrun per node (srun), c10d rendezvous on the first node of the job. See docs/gpu.md.
#
#   sbatch examples/slurm_cosettle.sh                      # 2 nodes x 8 GPUs, batch 32 per GPU
#   sbatch --nodes 1 examples/slurm_cosettle.sh            # 1 node: set BATCH / ACCUM to keep 512
#
# Resubmitting the same script continues the run (--resume: bit-identical data order, optimiser
# and RNG state; the same precision and global batch are required, the node count is not).
#SBATCH --job-name=cosettle-k400
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=64
#SBATCH --time=24:00:00
#SBATCH --output=%x-%j.out
set -euo pipefail

DATA=${DATA:-/data/kinetics400/train}   # class/video.mp4 tree or the authors' list layout
OUT=${OUT:-$PWD/runs/cosettle-k400}     # on a file system every node sees
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
BATCH=${BATCH:-32}                      # per GPU: 32 x 8 GPUs x 2 nodes = 512
ACCUM=${ACCUM:-1}                       # 1 node of 8: BATCH=64 ACCUM=1; of 4: BATCH=128
PYTHON=${PYTHON:-.venv/bin/python}

# The rendezvous endpoint: the first node of the allocation, a free port derived from the job id.
HEAD_NODE=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
PORT=$((29500 + SLURM_JOB_ID % 1000))
export OMP_NUM_THREADS=$((SLURM_CPUS_PER_TASK / GPUS_PER_NODE))

srun --kill-on-bad-exit=1 "$PYTHON" -m torch.distributed.run \
  --nnodes "$SLURM_JOB_NUM_NODES" --nproc-per-node "$GPUS_PER_NODE" \
  --rdzv-backend c10d --rdzv-endpoint "$HEAD_NODE:$PORT" --rdzv-id "$SLURM_JOB_ID" \
  -m videorep.cli train cosettle \
  --data "$DATA" --out "$OUT" --resume \
  --backbone dino_vitb16 --batch-size "$BATCH" --accum "$ACCUM" --epochs 5 --blr 1e-4 \
  --device cuda --precision bf16 --workers 8 --persistent-workers --no-progress
