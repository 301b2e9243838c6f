#!/bin/bash
# usage: alloc_time.sh CODE_DIR NAME  -- re-runs the allocation stage of /tmp/prof/runs/demo's run in a copy, then stops
code=$1; name=$2; run=/tmp/alloc_runs/$name
rm -rf $run; mkdir -p /tmp/alloc_runs; cp -r /tmp/prof/runs/demo $run
cd $run && rm -f allocation.json selection_at_widths.json rebuilt.pt finetune.json model.pt model.onnx export.json bench.json bench.csv report.* *.png latency_cache.json
cd $code
start=$(date +%s.%N)
.venv/bin/python -m compress --target-latency 0.5x --weights /tmp/prof/compress/assets/mbv2_fmnist_teacher.pt --out $run --resume > $run.log 2>&1 &
pid=$!
while [ ! -f $run/allocation.json ]; do sleep 0.5; if ! kill -0 $pid 2>/dev/null; then echo "died"; tail -3 $run.log; exit 1; fi; done
end=$(date +%s.%N)
kill $pid; wait $pid 2>/dev/null
python3 -c "
import json; d=json.load(open('$run/allocation.json'))
print('$name', round($end-$start,1), 's; probes', len(d['probes']), [round(p['measured_ms'],2) for p in d['probes']], 'cuts', d['cuts'], 'of', d['probes'][0]['of'], 'ms', round(d['measured_ms'],3), 'target', round(d['target_ms'],3))"
