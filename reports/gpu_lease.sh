#!/usr/bin/env bash
# Several stages of gpu_evidence.sh in one device call: each runs under what is left of SECONDS (and under its own cap,
# stage:cap), in the order given, so a stage that overruns costs the ones after it only its cap.
#   bash reports/gpu_lease.sh SECONDS OUT_DIR stage[:cap_seconds] ...
# Each stage's own log and outputs land in OUT_DIR; lease.log says how each ended (rc 124: stopped at its cap).
set -uo pipefail
[[ $# -ge 3 && $1 =~ ^[0-9]+$ ]] || { echo "usage: bash reports/gpu_lease.sh SECONDS OUT_DIR stage[:cap_seconds] ..." >&2; exit 2; }
total=$1 out=$2; deadline=$((SECONDS + total)); shift 2
mkdir -p "$out"
for item in "$@"; do
  stage=${item%%:*}; cap=${item#*:}; [[ $cap == "$item" ]] && cap=$total
  left=$((deadline - SECONDS))
  if ((left < 30)); then echo "$stage: not started, ${left} s left" | tee -a "$out/lease.log"; continue; fi
  ((cap > left)) && cap=$left
  start=$SECONDS
  timeout --kill-after=10 "$cap" bash "$(dirname "$0")/gpu_evidence.sh" "$stage" "$out"
  echo "$stage: rc $?, $((SECONDS - start)) s of a $cap s cap, ended $(date -u +%H:%M:%SZ)" | tee -a "$out/lease.log"
done
