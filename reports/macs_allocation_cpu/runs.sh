#!/usr/bin/env bash
# MACs-target runs of the product on the 2-core CPU VM: curve allocation at --min-share 0.5 (the old MACs default)
# against --min-share 1 (the uniform widths, the curves placing only the leftover budget). Run from the repo root.
set -u
for target in 0.25x 0.10x; do
  for share in 0.5 1; do
    out=runs/macs_${target}_share${share}
    echo "# $(date -u +%FT%TZ) start $out"
    .venv/bin/python -m compress --target-macs $target --min-share $share --candidates 32 --select-batch 32 --heldout 256 \
      --steps 8 --recal-batches 8 --finetune-epochs 1 --no-compare-l1 --out $out --overwrite > $out.log 2>&1
    echo "# $(date -u +%FT%TZ) end $out rc=$?"
  done
done
