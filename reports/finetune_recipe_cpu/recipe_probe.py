"""One epoch of fine-tuning a rebuilt network under a given recipe: which learning rate, KD temperature and KD weight
recover most in one epoch? Same data, batch 256 (``--batch-size``), weight decay 5e-4, Nesterov SGD, cosine after a
linear warm-up.

    python reports/finetune_recipe_cpu/recipe_probe.py REBUILT.pt TEACHER.pt --seed 0 --lr 0.01 --warmup 0.2 \
        --temperature 4 --alpha 0.9
"""
import argparse
import time

import torch
from compress import data as datasets, finetune, graph

parser = argparse.ArgumentParser()
parser.add_argument("rebuilt")
parser.add_argument("teacher")
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--lr", type=float, default=0.01)
parser.add_argument("--warmup", type=float, default=0.2)
parser.add_argument("--temperature", type=float, default=4.0)
parser.add_argument("--alpha", type=float, default=0.9)
parser.add_argument("--label-smoothing", type=float, default=0.1)
parser.add_argument("--batch-size", type=int, default=256)
args = parser.parse_args()

torch.manual_seed(args.seed)
data = datasets.load_data("fashion-mnist", None, stem="small", batch_size=args.batch_size)
model, _ = graph.load_checkpoint(args.rebuilt)
teacher = graph.load_checkpoint(args.teacher)[0]
started = time.perf_counter()
history = finetune.train(model, data, epochs=1, lr=args.lr, weight_decay=5e-4, teacher=teacher, warmup=args.warmup,
                         kd_temperature=args.temperature, kd_alpha=args.alpha, label_smoothing=args.label_smoothing,
                         device="cpu", progress=False)
finetune.recalibrate_bn(model, data, "cpu")
top1 = finetune.evaluate(model, data, "cpu")["top1"]
print(f"{vars(args)}: train loss {history[-1]['loss']:.4f}, test top-1 {top1:.4f}, "
      f"{time.perf_counter() - started:.0f} s", flush=True)
