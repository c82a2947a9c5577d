#!/usr/bin/env bash
#SBATCH --job-name=xlt-translate
#SBATCH --array=1-8
#SBATCH --cpus-per-task=8
#SBATCH --mem=16G
#SBATCH --time=12:00:00
#SBATCH --output=xlt-translate-%A_%a.log
#
# One shard of `xlt translate` per SLURM array task: task K of an array of N writes shard K/N.
#
#   sbatch --array=1-16 bin/slurm-translate.sh MODEL TGT INPUT.jsonl OUT [more xlt translate options]
#   # when all tasks are done:
#   bin/merge-shards OUT.*-of-016.jsonl > OUT.jsonl        # add -n N with --num-hypotheses N
#
# Shard K goes to OUT.KKK-of-NNN.jsonl (zero-padded, so a glob lists them in order, and
# merge-shards checks the K-of-N names). The array must start at 1 (K is $SLURM_ARRAY_TASK_ID, N
# the array's size); a task whose shard file exists is skipped (files are written atomically,
# so one that exists is complete): rerun the same sbatch to redo only failed tasks. CTranslate2
# gets the task's --cpus-per-task as threads. Convert a Hugging Face model once before
# submitting (`xlt translate -m MODEL --tgt TGT < /dev/null`) so the tasks do not all convert it
# at the same time (they would still agree: the cache is written atomically). Set $XLT to the
# xlt command if it is not on PATH (e.g. XLT=/path/to/.venv/bin/xlt).
set -euo pipefail

if [[ $# -lt 4 ]]; then
    echo "usage: sbatch --array=1-N $0 MODEL TGT INPUT OUT [xlt translate options...]" >&2
    exit 2
fi
model=$1 tgt=$2 input=$3 out=$4
shift 4

k=${SLURM_ARRAY_TASK_ID:?not running as a SLURM array task (submit with sbatch --array=1-N)}
n=${SLURM_ARRAY_TASK_COUNT:-${SLURM_ARRAY_TASK_MAX:?cannot tell the array size}}
if [[ ${SLURM_ARRAY_TASK_MIN:-1} -ne 1 || ${SLURM_ARRAY_TASK_MAX:-$n} -ne $n ]]; then
    echo "slurm-translate.sh: error: the array must be 1-N (got ${SLURM_ARRAY_TASK_MIN:-?}-${SLURM_ARRAY_TASK_MAX:-?})" >&2
    exit 2
fi
shard_file=$(printf '%s.%03d-of-%03d.jsonl' "$out" "$k" "$n")
if [[ -e $shard_file ]]; then
    echo "slurm-translate.sh: $shard_file exists; shard $k/$n is done" >&2
    exit 0
fi

# shellcheck disable=SC2086  # $XLT may be a command with arguments ("python -m xlt")
${XLT:-xlt} translate --model "$model" --tgt "$tgt" --shard "$k/$n" --threads "${SLURM_CPUS_PER_TASK:-0}" \
    -o "$shard_file" "$@" "$input"
