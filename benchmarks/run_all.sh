#!/usr/bin/env bash
# Run every benchmark in benchmarks/ one after the other, each printing its own figures, ratios
# against its baseline (measured in the same run), machine, versions and load average.
#
#   benchmarks/run_all.sh [--quick] [translate|softlabel|train ...]
#
# --quick: small sizes (minutes, for checking that the suite runs; the figures are noisy).
# Without names, all three run. Each gets its own work dir under $XLT_BENCH_ROOT (default /tmp).
# Everything runs under `nice -n 5` (the machine may be shared). Exit status: the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
ROOT_DIR="${XLT_BENCH_ROOT:-/tmp}"
quick=0
names=()
for arg in "$@"; do
  case "$arg" in
    --quick) quick=1 ;;
    translate|softlabel|train) names+=("$arg") ;;
    -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run_all.sh: error: unknown argument $arg (use --quick, translate, softlabel, train)" >&2; exit 2 ;;
  esac
done
[ ${#names[@]} -eq 0 ] && names=(translate softlabel train)

for name in "${names[@]}"; do
  args=(--workdir "$ROOT_DIR/xlt-bench-$name")
  if [ "$quick" = 1 ]; then
    case "$name" in
      translate) args+=(--sentences 200 --hf-sentences 50 --memory-records 2000 --rounds 1) ;;
      softlabel) args+=(--records 200 --memory-records 200) ;;
      train) args+=(--records 64) ;;
    esac
  fi
  echo "== benchmarks/$name.py ${args[*]}"
  start=$(date +%s)
  nice -n 5 "$PY" "benchmarks/$name.py" "${args[@]}"
  echo "== benchmarks/$name.py done in $(( $(date +%s) - start )) s"
  echo
done
