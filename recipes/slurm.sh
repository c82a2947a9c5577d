#!/bin/bash
# SLURM example: one recipe at SCALE=paper on one GPU node.
#
#   sbatch recipes/slurm.sh robust-xlt
#   sbatch --gres=gpu:4 recipes/slurm.sh monox TRAIN_XLT="torchrun --nproc-per-node 4 -m xlt"
#
# The recipe is Make: a job that ends early (time limit, preemption) is resubmitted with the same
# command and continues with the first unfinished step. Training steps save resumable state
# (every 500 steps, and on SIGTERM) in <checkpoint>.partial, and the recipe then resumes that step
# with --resume (delete the .partial directory to start the step over).
#
# Data the project cannot ship must be in place first (see recipes/README.md, "SCALE=paper"):
#   $PAPER_DATA/mnli/train.en.jsonl, $PAPER_DATA/xnli/test.{en,fr,...}.jsonl, test.meta.jsonl
#
#SBATCH --job-name=xlt-recipe
#SBATCH --nodes=1
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=8
#SBATCH --mem=64G
#SBATCH --time=24:00:00
#SBATCH --output=%x-%j.log
#SBATCH --signal=B:TERM@120

set -euo pipefail
recipe=${1:?usage: sbatch recipes/slurm.sh RECIPE [MAKE VARIABLES...]}
shift
cd "${SLURM_SUBMIT_DIR:-$(dirname "$0")/..}"

# The hub is reachable from most clusters; set HF_HUB_OFFLINE=1 where it is not (then MODEL must
# be a local directory).
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-0}
export TOKENIZERS_PARALLELISM=false

# SLURM sends SIGTERM to this shell 120 s before the time limit (--signal=B:TERM@120): pass it to
# the whole process group, so make stops and the running xlt step saves its state.
trap 'trap - TERM; kill -TERM 0' TERM
make -C "recipes/$recipe" SCALE=paper PAPER_DATA="${PAPER_DATA:-$PWD/data}" "$@" &
wait $!
