"""Benchmark of selection methods at equal MACs: one-shot, fine-tuned, distilled, and from scratch.

    python -m compress.benchmark --config configs/bench_methods_fmnist.yaml --out reports/methods_fmnist

For each method the channels are selected once; each MACs target then gets its widths (curve-driven
allocation for GFS and imitation, one ratio for every group for the classic criteria, as
Torch-Pruning's reference does), is rebuilt physically and measured one-shot (with and without
BN re-estimation), after 1 epoch of fine-tuning, after 5 epochs with and without KD, and against
the same shape trained from scratch for the teacher's epoch budget (Scratch-E). Fine-tuning jobs
run as parallel processes: these networks are launch-bound on a GPU, so several fit at once.
"""
import argparse
import copy
import datetime
import json
import platform
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import torch
import yaml

from compress import budget, data as datasets, finetune, graph, io, macs
from compress.errors import UserError, exit_on_user_error
from compress.select import apply_selection, check_method, select_channels, speed

FINETUNE_SCHEDULES = {  # column -> (epochs, KD from the teacher, re-initialise first)
    "ft1": (1, False, False),
    "ft5": (5, False, False),
    "ft5_kd": (5, True, False),
}


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML recipe; flags override it")
    parser.add_argument("--teacher", help="teacher checkpoint (compress.train output)")
    parser.add_argument("--data", default="fashion-mnist")
    parser.add_argument("--data-dir")
    parser.add_argument("--methods", default="gfs,imitation,l1,bnscale,random,uniform")
    parser.add_argument("--targets", default="0.25x,0.10x", help="MACs targets, relative or absolute")
    parser.add_argument("--candidates", type=int, default=50)
    parser.add_argument("--select-batch", type=int, default=128)
    parser.add_argument("--heldout", type=int, default=2000)
    parser.add_argument("--scratch-epochs", type=float, default=None, help="default: the teacher's epochs")
    parser.add_argument("--columns", default="ft1,ft5,ft5_kd,scratch")
    parser.add_argument("--jobs", type=int, default=4, help="fine-tuning processes at once")
    parser.add_argument("--speed-steps", type=int, default=10, help="greedy steps timed per scheme (0: skip)")
    parser.add_argument("--train-limit", type=int, default=None, help="use only this many training images")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stages", default="select,prune,finetune,report", help="comma list of stages to run")
    return parser


def parse_args(argv=None):
    parser = get_args_parser()
    args = parser.parse_args(argv)
    if args.config:
        recipe = yaml.safe_load(Path(args.config).read_text()) or {}
        parser.set_defaults(**{k.replace("-", "_"): v for k, v in recipe.items()})
        args = parser.parse_args(argv)
    if not args.teacher:
        raise UserError("no teacher checkpoint; pass --teacher (train one with python -m compress.train)")
    return args


def load_teacher(args):
    model, arch = graph.load_checkpoint(args.teacher)
    data = datasets.load_data(args.data, args.data_dir, stem=arch["stem"], batch_size=256, train_limit=args.train_limit)
    return model.to(args.device), arch, data


def select_stage(args, model, arch, data, out):
    """Selections (one per method, reused for every target) and the selection-speed comparison."""
    input_size = tuple(arch["input_size"])
    draw = datasets.batch_sampler(data, args.select_batch, args.device, torch.Generator().manual_seed(args.seed))
    heldout = datasets.heldout_batch(data, args.heldout, args.device, seed=args.seed)
    if args.speed_steps:
        images, labels = draw()
        result = speed.compare(model, input_size, images, labels, candidates=args.candidates, steps=args.speed_steps)
        io.write_json(out / "selection_speed.json", result)
        print(json.dumps(result, indent=1))
    for method in args.methods.split(","):
        path = out / f"selection_{method}.json"
        if path.exists():
            continue
        check_method(method)
        _sync(args.device)
        selection = select_channels(model, input_size, method, draw, heldout, candidates=args.candidates, seed=args.seed)
        _sync(args.device)
        io.write_json(path, selection)
        print(f"{method}: selection {selection['seconds']:.1f} s")


def _sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


@exit_on_user_error
def main(argv=None):
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    model, arch, data = load_teacher(args)
    if "select" in args.stages:
        select_stage(args, model, arch, data, out)


if __name__ == "__main__":
    main()
