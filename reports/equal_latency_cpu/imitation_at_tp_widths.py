"""Probe: greedy imitation at the widths Torch-Pruning's L1 (round_to 16) chose for the same measured latency.

The run in run_0.5x/ lost to Torch-Pruning's L1 at equal latency. Same widths (so the same latency) with imitation's
channels and re-fit separates the allocation from the selection. Settings are that run's.

    python reports/equal_latency_cpu/imitation_at_tp_widths.py runs/eqlat_0.5x/tp_l1_rebuilt.pt OUT.pt
then fine-tune as the pipeline does:
    python -m compress.train --weights OUT.pt --epochs 1 --lr 0.01 --weight-decay 5e-4 --teacher compress/assets/mbv2_fmnist_teacher.pt --out FT.pt
"""
import sys
import time

import torch

from compress import data as datasets, finetune, graph
from compress.select import select_at_widths

widths = graph.read_checkpoint(sys.argv[1])["arch"]["widths"]
teacher, arch = graph.load_checkpoint("compress/assets/mbv2_fmnist_teacher.pt")
data = datasets.load_data("fashion-mnist", stem=arch["stem"], batch_size=256)
draw = datasets.batch_sampler(data, 32, "cpu", torch.Generator().manual_seed(0))
heldout = datasets.heldout_batch(data, 256, "cpu", seed=0)
started = time.perf_counter()
selection, pruned = select_at_widths(teacher, tuple(arch["input_size"]), widths, draw,
                                     lambda network: finetune.recalibrate_bn(network, data, "cpu", batches=8), heldout,
                                     method="imitation", candidates=16, steps=8, seed=0)
graph.save_pruned(sys.argv[2], pruned, arch)
one_shot = finetune.evaluate(finetune.recalibrate_bn(pruned, data, "cpu"), data, "cpu")["top1"]
print(f"imitation at Torch-Pruning's widths: selection {time.perf_counter() - started:.0f} s, one-shot (BN re-est.) {one_shot:.4f}")
