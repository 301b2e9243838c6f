"""Does an exponential moving average of the weights recover more in one epoch than the last weights?

Fine-tunes one rebuilt network for one epoch with the product's recipe (as recipe_probe.py: peak 0.03, warm-up 0.2,
batch 128, KD T 4 α 0.9, label smoothing 0.1) and keeps EMAs of the weights at several decays along the same
trajectory (torch.optim.swa_utils, as torchvision's references/classification/train.py --model-ema), so the
comparison is paired: one shuffle order, one set of steps, several ways to read the weights at the end.

    python reports/ema_cpu/ema_probe.py REBUILT.pt TEACHER.pt --seed 0 --decays 0.99,0.995,0.998
"""
import argparse
import time

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from compress import data as datasets, finetune, graph

parser = argparse.ArgumentParser()
parser.add_argument("rebuilt")
parser.add_argument("teacher")
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--lr", type=float, default=finetune.FINETUNE_LR)
parser.add_argument("--batch-size", type=int, default=finetune.FINETUNE_BATCH)
parser.add_argument("--decays", default="0.99,0.995,0.998")
args = parser.parse_args()

torch.manual_seed(args.seed)
data = datasets.load_data("fashion-mnist", None, stem="small", batch_size=args.batch_size)
model, _ = graph.load_checkpoint(args.rebuilt)
teacher = graph.load_checkpoint(args.teacher)[0]
decays = [float(d) for d in args.decays.split(",")]
averages = {d: AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(d), use_buffers=True) for d in decays}

sgd_step = torch.optim.SGD.step


def step_and_average(optimizer, *args, **kwargs):
    """SGD's step, then every average takes in the new weights: the probe leaves finetune.train as the product runs it."""
    result = sgd_step(optimizer, *args, **kwargs)
    for average in averages.values():
        average.update_parameters(model)
    return result


torch.optim.SGD.step = step_and_average
started = time.perf_counter()
history = finetune.train(model, data, epochs=1, lr=args.lr, weight_decay=5e-4, teacher=teacher, warmup=0.2,
                         kd_temperature=4.0, kd_alpha=0.9, label_smoothing=0.1, device="cpu", progress=False)
torch.optim.SGD.step = sgd_step
seconds = time.perf_counter() - started
finetune.recalibrate_bn(model, data, "cpu")
results = {"last weights": finetune.evaluate(model, data, "cpu")["top1"]}
for decay, average in averages.items():
    finetune.recalibrate_bn(average.module, data, "cpu")
    results[f"EMA {decay}"] = finetune.evaluate(average.module, data, "cpu")["top1"]
print(f"{vars(args)}: train loss {history[-1]['loss']:.4f}, {seconds:.0f} s; test top-1 "
      + ", ".join(f"{name} {top1:.4f}" for name, top1 in results.items()), flush=True)
