#!/usr/bin/env bash
# The rate-distortion benchmark of #16: Set5 and Set14, x2 and x4 (docs/eval/lr_formats-rd-x*-*.json), then the
# chart and the tables of docs/results.md ("Stored as JPEG or WebP").
#   bash benchmarks/rd_all.sh                               # all runs (about 3.5 h on 2 cores)
#   RUNS="x2:Set5 x4:Set5" bash benchmarks/rd_all.sh        # some of them
#   RUNS=none bash benchmarks/rd_all.sh                     # only the chart and tables from the committed JSON
# Set5: the HR itself as JPEG / WebP; bicubic LR + bicubic up; irn-xN plain, pixel HCD (it matters for PNG and
# WebP) and HCD in the JPEG file; irn-xN-jpeg (the codec-robust model) plain and with HCD in the JPEG file; at PNG,
# JPEG q75/90/95 and WebP q75/90. Set14 (3x the pixels): the same without pixel HCD, JPEG q75 and WebP q75.
# joint:SET: irn-x2-jpeg-joint and irn-x4-jpeg-joint (chain fine-tuned with JPEG) plain and with HCD in the file, and
# 32 steps at x2 q90, Barzilai-Borwein (the preset's) and Adam with the bits term (`--set optimizer=adam`, the archive
# job spec's), each in its own JSON file (--render merges the runs of one set and scale).
# jointv2:SET: the same runs for irn-x2-jpeg-joint.v2 / irn-x4-jpeg-joint.v2 (the recipe trained longer, session 8).
# guard:SET: irn-x2-jpeg-joint.v2 at x2 q90 with the colour guard (`--set judge=y+rgb`): the preset, 32 Barzilai-Borwein
# steps (and at q93) and 32 Adam steps.
set -eu
cd "$(dirname "$0")/.."
PY=${PY:-python}
for run in ${RUNS:-x2:Set5 x2:Set14 x4:Set5 x4:Set14 steps:Set5 steps:Set14 joint:Set5 joint:Set14 jointv2:Set5 jointv2:Set14 guard:Set5 guard:Set14}; do
  [ "$run" = none ] && continue
  s=${run%%:*}; s=${s#x}; set_=${run#*:}
  if [ "$s" = joint ] || [ "$s" = jointv2 ]; then  # the joint codec models, x2 and x4, their own files merged by --render
    [ "$s" = joint ] && m=jpeg-joint || m=jpeg-joint-v2
    [ "$set_" = Set5 ] && formats=png:0,jpeg:75,jpeg:90,jpeg:95 || formats=png:0,jpeg:90,jpeg:95
    for n in 2 4; do
      $PY benchmarks/lr_formats.py --data "$set_" --scale $n --formats "$formats" --no-baselines \
        --models "irn-x$n-$m:plain+infile" --out "docs/eval/lr_formats-$s-x$n-$set_.json"
    done
    $PY benchmarks/lr_formats.py --data "$set_" --scale 2 --formats jpeg:90 --no-baselines --models "irn-x2-$m:infile" \
      --set lr_steps=32 --out "docs/eval/lr_formats-steps32-$s-x2-$set_.json"
    # v2's Adam run also writes the plain rows (their RGB PSNR for the optimiser table)
    [ "$s" = joint ] && what=infile || what=plain+infile
    $PY benchmarks/lr_formats.py --data "$set_" --scale 2 --formats jpeg:90 --no-baselines --models "irn-x2-$m:$what" \
      --set lr_steps=32 --set optimizer=adam --out "docs/eval/lr_formats-adam32-$s-x2-$set_.json"
    # Barzilai-Borwein at q93, past the bytes of Adam's q90 file: the two at equal bytes
    $PY benchmarks/lr_formats.py --data "$set_" --scale 2 --formats jpeg:93 --no-baselines --models "irn-x2-$m:infile" \
      --set lr_steps=32 --out "docs/eval/lr_formats-steps32q93-$s-x2-$set_.json"
    continue
  fi
  if [ "$s" = guard ]; then  # the colour guard with the v2 joint model: the preset, 32 BB steps at q90 and q93, 32 Adam steps
    g=(--scale 2 --no-baselines --models irn-x2-jpeg-joint.v2:infile --set judge=y+rgb)
    $PY benchmarks/lr_formats.py --data "$set_" --formats jpeg:90 "${g[@]}" --out "docs/eval/lr_formats-guard-jointv2-x2-$set_.json"
    for q in 90 93; do
      [ $q = 93 ] && f=steps32q93 || f=steps32
      $PY benchmarks/lr_formats.py --data "$set_" --formats jpeg:$q "${g[@]}" --set lr_steps=32 \
        --out "docs/eval/lr_formats-guard-$f-jointv2-x2-$set_.json"
    done
    $PY benchmarks/lr_formats.py --data "$set_" --formats jpeg:90 "${g[@]}" --set lr_steps=32 --set optimizer=adam \
      --out "docs/eval/lr_formats-guard-adam32-jointv2-x2-$set_.json"
    continue
  fi
  if [ "$s" = steps ]; then  # HCD in the JPEG file with 16 and 32 steps (x2, q90); 16 on Set5 only
    for n in 16 32; do
      [ "$set_" = Set14 ] && [ "$n" = 16 ] && continue
      $PY benchmarks/lr_formats.py --data "$set_" --scale 2 --formats jpeg:90 --no-baselines --models irn-x2-jpeg:infile \
        --set lr_steps=$n --out "docs/eval/lr_formats-steps$n-x2-$set_.json"
    done
    continue
  fi
  if [ "$set_" = Set5 ]; then
    formats=png:0,jpeg:75,jpeg:90,jpeg:95,webp:75,webp:90 hr=jpeg:50,jpeg:75,jpeg:90,webp:50,webp:75,webp:90 m=plain+hcd+infile
  else
    formats=png:0,jpeg:90,jpeg:95,webp:90 hr=jpeg:50,jpeg:75,webp:50,webp:75 m=plain+infile
  fi
  $PY benchmarks/lr_formats.py --data "$set_" --scale "$s" --formats "$formats" --hr-formats "$hr" \
    --models "irn-x$s:$m,irn-x$s-jpeg:plain+infile" --out "docs/eval/lr_formats-rd-x$s-$set_.json"
done
files=$(for f in rd-x2-Set5 steps16-x2-Set5 steps32-x2-Set5 joint-x2-Set5 steps32-joint-x2-Set5 steps32q93-joint-x2-Set5 \
  adam32-joint-x2-Set5 jointv2-x2-Set5 steps32-jointv2-x2-Set5 steps32q93-jointv2-x2-Set5 adam32-jointv2-x2-Set5 \
  guard-jointv2-x2-Set5 guard-steps32-jointv2-x2-Set5 guard-steps32q93-jointv2-x2-Set5 guard-adam32-jointv2-x2-Set5 \
  rd-x2-Set14 steps32-x2-Set14 joint-x2-Set14 steps32-joint-x2-Set14 steps32q93-joint-x2-Set14 adam32-joint-x2-Set14 \
  jointv2-x2-Set14 steps32-jointv2-x2-Set14 steps32q93-jointv2-x2-Set14 adam32-jointv2-x2-Set14 guard-jointv2-x2-Set14 \
  guard-steps32-jointv2-x2-Set14 guard-steps32q93-jointv2-x2-Set14 guard-adam32-jointv2-x2-Set14 \
  rd-x4-Set5 joint-x4-Set5 jointv2-x4-Set5 rd-x4-Set14 joint-x4-Set14 jointv2-x4-Set14; do
  [ -f "docs/eval/lr_formats-$f.json" ] && echo "docs/eval/lr_formats-$f.json"; done | paste -sd,)
$PY benchmarks/lr_formats.py --render "$files" --chart docs/lr_formats-rd.svg >docs/eval/lr_formats-rd.md
