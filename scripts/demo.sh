#!/usr/bin/env bash
# The main job on the embedded default: synthetic X-rays -> check -> TFRecords -> train -> evaluate
# -> export for TF Serving -> predict with an overlay. With IMAGE (a real AP spine X-ray) only the shipped
# reference model measures it, into OUT_DIR/reference (an earlier demo's outputs are kept, nothing is
# retrained). Usage: scripts/demo.sh SEG4REG_BIN OUT_DIR [IMAGE]
set -euo pipefail
SEG4REG=${1:-seg4reg}
OUT=${2:-demo_out}
IMAGE=${3:-}
REFERENCE=serving/models/seg4reg
if [ -n "$IMAGE" ]; then
  if [ ! -f "$IMAGE" ]; then
    echo "demo: IMAGE=$IMAGE: no such file (expected a JPEG, PNG or DICOM X-ray)" >&2
    exit 2
  fi
  echo "== your image with the reference model ($REFERENCE, trained on real AASCE X-rays; see its MODEL_CARD.md)"
  rm -rf "$OUT/reference"
  mkdir -p "$OUT"
  "$SEG4REG" predict "$IMAGE" --model "$REFERENCE" --out "$OUT/reference"
  echo "Reference model: $(ls "$OUT"/reference/*.json | head -n 1)  Overlay: $(ls "$OUT"/reference/*_overlay.png | head -n 1)"
  exit 0
fi
rm -rf "$OUT"
mkdir -p "$OUT"

echo "== 1/7 synthetic AASCE-format data"
"$SEG4REG" data synth "$OUT/data" --n-train 240 --n-test 40 --seed 0
echo "== 2/7 data check"
"$SEG4REG" data check "$OUT/data" --split training
echo "== 3/7 TFRecords (the format a TFX ExampleGen ingests)"
"$SEG4REG" data convert "$OUT/data" "$OUT/tfrecords" --split test --shards 2
echo "== 4/7 train (configs/demo.yaml)"
"$SEG4REG" train --config configs/demo.yaml --data "$OUT/data" --out "$OUT/run"
echo "== 5/7 evaluate on the held-out synthetic test split"
"$SEG4REG" evaluate --run "$OUT/run" --data "$OUT/data" --split test --out "$OUT/eval"
echo "== 6/7 export a TF Serving model (BASE/1/)"
"$SEG4REG" export "$OUT/run" --out "$OUT/models/seg4reg" --version 1
echo "== 7/7 predict with an overlay"
first=$(ls "$OUT/data/data/test" | head -n 1)
"$SEG4REG" predict "$OUT/data/data/test/$first" --model "$OUT/models/seg4reg" --out "$OUT/predict"
echo
echo "Demo finished. Report: $OUT/eval/report.json  Overlay: $(ls "$OUT"/predict/*_overlay.png | head -n 1)"
echo "Measure a real X-ray with the shipped reference model (no retraining): make demo IMAGE=path/to/xray.jpg"
