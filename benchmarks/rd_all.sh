#!/usr/bin/env bash
# The rate-distortion benchmark of #16: Set5 and Set14, x2 and x4 (docs/eval/lr_formats-rd-x*-*.json), then the chart.
#   bash benchmarks/rd_all.sh                    # all four (about 1.5 h on one core of the project's CPU)
#   RUNS="x2:Set5 x4:Set5" bash benchmarks/rd_all.sh
# Each run: the HR itself as JPEG / WebP; bicubic LR + bicubic up; irn-xN plain, pixel HCD (PNG, WebP) and HCD in the
# JPEG file; irn-xN-jpeg (the codec-robust model) plain and with HCD in the JPEG file, at each LR format and quality.
set -eu
cd "$(dirname "$0")/.."
PY=${PY:-python}
for run in ${RUNS:-x2:Set5 x2:Set14 x4:Set5 x4:Set14}; do
  s=${run%%:*}; s=${s#x}; set_=${run#*:}
  $PY benchmarks/lr_formats.py --data "$set_" --scale "$s" --formats png:0,jpeg:75,jpeg:90,jpeg:95,webp:75,webp:90 \
    --hr-formats jpeg:50,jpeg:75,jpeg:90,webp:50,webp:75,webp:90 \
    --models "irn-x$s:plain+hcd+infile,irn-x$s-jpeg:plain+infile" --out "docs/eval/lr_formats-rd-x$s-$set_.json"
done
files=$(ls docs/eval/lr_formats-rd-x*-*.json | sort -t- -k4,4 -k3,3 | paste -sd,)
$PY benchmarks/lr_formats.py --render "$files" --chart docs/lr_formats-rd.svg
