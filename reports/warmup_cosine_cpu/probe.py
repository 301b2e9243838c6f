"""Fine-tune one rebuilt network as python -m compress does (KD from the teacher, batch 128, peak lr 0.03, weight
decay 5e-4, a warm-up over 20% of the steps, BN re-estimated on 10 batches), under either learning-rate schedule:

- ``after``: the cosine runs over the steps after the warm-up, from 1 down to 0 (``finetune.warmup_cosine`` now);
- ``whole``: the cosine of the whole run, joined where it stands at the warm-up's end (a drop from 1 to about 0.9
  there; ``finetune.warmup_cosine`` before).

    python reports/warmup_cosine_cpu/probe.py RUN/rebuilt.pt compress/assets/mbv2_fmnist_teacher.pt \
        --schedule after --epochs 0.2 --seed 0
"""
import argparse
import math
import time

import torch

from compress import data as datasets, finetune, graph


def whole_run_cosine(step, total_steps, warmup_steps):
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    return 0.5 * (1 + math.cos(math.pi * step / total_steps))


parser = argparse.ArgumentParser()
parser.add_argument("rebuilt")
parser.add_argument("teacher")
parser.add_argument("--schedule", choices=("after", "whole"), required=True)
parser.add_argument("--epochs", type=float, default=0.2)
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()

if args.schedule == "whole":
    finetune.warmup_cosine = whole_run_cosine
torch.manual_seed(args.seed)
data = datasets.load_data("fashion-mnist", None, stem="small", batch_size=finetune.FINETUNE_BATCH)
model, _ = graph.load_checkpoint(args.rebuilt)
teacher = graph.load_checkpoint(args.teacher)[0]
started = time.perf_counter()
history = finetune.train(model, data, epochs=args.epochs, lr=finetune.FINETUNE_LR, warmup=finetune.FINETUNE_WARMUP,
                         weight_decay=finetune.FINETUNE_WEIGHT_DECAY, teacher=teacher, device="cpu", progress=False)
finetune.recalibrate_bn(model, data, "cpu", batches=10)
top1 = finetune.evaluate(model, data, "cpu")["top1"]
print(f"{vars(args)}: train loss {history[-1]['loss']:.4f}, test top-1 {top1:.4f}, "
      f"{time.perf_counter() - started:.0f} s", flush=True)
