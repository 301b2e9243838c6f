#!/bin/bash
# Every zoo model through the latency-only recipe (recipe.yaml: configs/latency_imagenet.yaml on ort-cpu, batch 1, fp32,
# one thread, 96 px) to 0.6x its measured latency. Usage: bash reports/zoo_latency_cpu/sweep.sh OUT_DIR (from the repo root)
set -u
OUT=${1:?give an output directory}
RECIPE=$(dirname "$0")/recipe.yaml
mkdir -p "$OUT"
for m in resnet18 resnet34 resnet50 mobilenet_v2 mobilenet_v3_small mobilenet_v3_large proxyless_gpu proxyless_mobile proxyless_cpu; do
  start=$(date +%s)
  echo "# $(date -u +%FT%TZ) $m"
  .venv/bin/python -m compress --config "$RECIPE" --model $m --target-latency 0.6x --overwrite --out "$OUT/$m" 2>&1 | tail -4
  echo "# rc ${PIPESTATUS[0]} wall $(( $(date +%s) - start )) s"
done
