"""How many training batches the BN re-estimation before an evaluation needs: stop25's fine-tuned model re-estimated
on 50 and on 10 batches of 128, each then evaluated on the 10k test images (the CPU default became 10).

PYTHONPATH=. .venv/bin/python reports/demo_cpu/stop25/bn_batches.py RUN_DIR   (the run directory of the stop25 demo)
"""
import datetime
import subprocess
import sys
import time
from pathlib import Path

import torch

from bench import latency
from compress import data as datasets, finetune, graph

torch.manual_seed(0)
model, arch = graph.load_checkpoint(Path(sys.argv[1]) / "model.pt")
data = datasets.load_data("fashion-mnist", stem=arch["stem"], batch_size=128)
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
print(f"# {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%dT%H:%M:%SZ}, commit {commit}, {latency.cpu_name()}, "
      f"torch {torch.__version__}, {torch.get_num_threads()} threads; {sys.argv[1]}/model.pt")
for batches in (50, 10, 50, 10):
    started = time.perf_counter()
    finetune.recalibrate_bn(model, data, "cpu", batches=batches)
    seconds = time.perf_counter() - started
    print(f"BN re-estimated on {batches} batches in {seconds:.1f} s: test top-1 {finetune.evaluate(model, data, 'cpu')['top1']:.4f}")
