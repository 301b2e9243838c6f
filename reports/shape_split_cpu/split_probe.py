"""Is the uniform shape the best 0.25x-MACs shape for one epoch? Imitation at widths where the expansion (depthwise)
groups and the other groups (block outputs, residual streams, the last 1x1) keep different ratios, the expansion ratio
bisected so the network lands at the same MACs; then one epoch with KD, the product's recipe.

    python reports/shape_split_cpu/split_probe.py --outer 0.7 --out reports/shape_split_cpu/models/outer0.7.pt

Selection settings are the methods benchmark's CPU recipe (../imitation_dropout_cpu/); the epoch is
../finetune_recipe_cpu/recipe_probe.py's with lr 0.03, batch 128.
"""
import argparse
import time
from pathlib import Path

import torch
from compress import budget, data as datasets, finetune, graph, macs
from compress.select import select_at_widths

parser = argparse.ArgumentParser()
parser.add_argument("--teacher", default="compress/assets/mbv2_fmnist_teacher.pt")
parser.add_argument("--outer", type=float, required=True, help="keep ratio of the groups without a depthwise conv")
parser.add_argument("--target", type=float, default=0.25, help="share of the teacher's MACs")
parser.add_argument("--seed", type=int, default=0, help="selection and fine-tune shuffle seed")
parser.add_argument("--out", required=True, help="the pruned checkpoint (reused if it exists)")
args = parser.parse_args()

teacher, arch = graph.load_checkpoint(args.teacher)
input_size = tuple(arch["input_size"])
groups = graph.list_groups(teacher, input_size)
cost = macs.width_cost_model(teacher, input_size, groups)
full_macs = cost({g.id: g.width for g in groups})[0]
shape = lambda inner: {g.id: max(1, round(g.width * (inner if g.depthwise else args.outer))) for g in groups}
inner, _ = budget.bisect_ratio(lambda r: cost(shape(r))[0], args.target * full_macs, steps=40)
widths = shape(inner)
print(f"outer {args.outer}, expansion ratio {inner:.3f}, MACs {cost(widths)[0] / full_macs:.4f}x", flush=True)

data = datasets.load_data("fashion-mnist", None, stem=arch["stem"], batch_size=128)
if not Path(args.out).exists():
    draw = datasets.batch_sampler(data, 32, "cpu", torch.Generator().manual_seed(args.seed))
    heldout = datasets.heldout_batch(data, 256, "cpu", seed=args.seed)
    recalibrate = lambda network: finetune.recalibrate_bn(network, data, "cpu", batches=8)
    selection, pruned = select_at_widths(teacher, input_size, widths, draw, recalibrate, heldout, method="imitation",
                                         candidates=32, steps=8, seed=args.seed, progress=False)
    graph.save_pruned(args.out, pruned, arch)
    print(f"selection {selection['seconds']:.0f} s", flush=True)
model, _ = graph.load_checkpoint(args.out)
one_shot = finetune.evaluate(finetune.recalibrate_bn(model, data, "cpu"), data, "cpu")["top1"]
torch.manual_seed(args.seed)
started = time.perf_counter()
finetune.train(model, data, epochs=1, lr=0.03, weight_decay=5e-4, teacher=teacher, warmup=0.2, kd_temperature=4.0,
               kd_alpha=0.9, label_smoothing=0.1, device="cpu", progress=False)
finetune.recalibrate_bn(model, data, "cpu")
top1 = finetune.evaluate(model, data, "cpu")["top1"]
print(f"outer {args.outer} seed {args.seed}: one-shot {one_shot:.4f}, 1 epoch with KD {top1:.4f}, "
      f"{time.perf_counter() - started:.0f} s fine-tune", flush=True)
