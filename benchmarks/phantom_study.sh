#!/usr/bin/env bash
# The generalist-vs-specialist study (issue 5) on synthetic lateral phantoms, from scratch.
#   benchmarks/phantom_study.sh [OUT_DIR] [PER_CLASS] [SEEDS]
# Renders PER_CLASS (default 300) lateral phantoms per class at the default size, then benchmarks
# the generalist and both specialists on one shared split with the plugins' default settings.
# The answer is the first section of OUT_DIR/report/report.md (and study.answer in leaderboard.json).
set -euo pipefail
OUT=${1:-reports/phantom-study}  # reports/ is git-ignored
PER_CLASS=${2:-300}
SEEDS=${3:-1}
mkdir -p "$OUT"
start=$(date +%s)
if [ ! -f "$OUT/phantoms/manifest.csv" ]; then
  spinescan synth "$OUT/phantoms" --per-class "$PER_CLASS" --views lateral --workers 2
fi
spinescan bench generalist kyphosis lordosis --data "$OUT/phantoms" --seeds "$SEEDS" \
  --runs "$OUT/runs" --out "$OUT/report"
echo "phantom study finished in $(( $(date +%s) - start )) s: $OUT/report/report.md"
