#!/usr/bin/env bash
# The main job end to end on the embedded default data (synthetic phantoms):
#   synth -> bench (trains every registered model) -> export winners to ONNX -> edge predictor.
# Called by `make demo`, with the project's virtualenv first on PATH.
set -euo pipefail
DATA=${SPINESCAN_DEMO_DATA:-dataset/phantoms}
PER_CLASS=${SPINESCAN_DEMO_PER_CLASS:-150}
EPOCHS=${SPINESCAN_DEMO_EPOCHS:-}

echo "== 1/4 synthetic phantoms ($PER_CLASS per class) -> $DATA"
if [ -f "$DATA/manifest.csv" ]; then
  echo "   $DATA already exists; reusing it (delete it to regenerate)"
else
  spinescan synth "$DATA" --per-class "$PER_CLASS" --workers 2
fi

echo "== 2/4 benchmark: train and evaluate every registered model on one shared split"
REPORT=reports/demo-$(date +%Y%m%d-%H%M%S)
spinescan bench --data "$DATA" --out "$REPORT" ${EPOCHS:+--epochs "$EPOCHS"}

echo "== 3/4 export the benchmark's winners to ONNX"
status=0
spinescan export --onnx --out exported || status=$?
if [ "$status" -eq 3 ]; then  # the weak-model gate refused some models; the others were exported
  echo "   (the weak model(s) named above were not exported; the demo goes on with the others)"
elif [ "$status" -ne 0 ]; then
  exit "$status"
fi

echo "== 4/4 edge predictor (no TensorFlow) on a few phantoms"
spinescan-predict --models exported --view lateral \
  "$(ls "$DATA"/lateral/kyphosis/*.png | head -1)" \
  "$(ls "$DATA"/lateral/lordosis/*.png | head -1)"
spinescan-predict --models exported --view ap "$(ls "$DATA"/ap/scoliosis/*.png | head -1)"

echo
echo "Done. Report: $REPORT/report.md   Models: exported/   Runs: runs/"
echo "Browser page (films stay on this machine): spinescan serve  ->  http://127.0.0.1:8000/web/"
