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


def uniform_widths(groups, ratio, align=1):
    """The same keep ratio in every group (Torch-Pruning's uniform pruning)."""
    return {g.id: max(align, int(round(g.width * ratio / align)) * align) if g.width > align else g.width for g in groups}


def widths_for_target(method, model, input_size, selection, target_macs):
    """Curve-driven allocation for GFS/imitation; one ratio everywhere for the classic criteria."""
    if method in ("gfs", "imitation"):
        return budget.allocate_macs(model, input_size, selection, target_macs)["widths"]
    groups = graph.list_groups(model, input_size)
    low, high = 0.0, 1.0
    for _ in range(30):  # bisect the ratio whose exact MACs land just under the target
        ratio = (low + high) / 2
        arch_macs = macs.count_macs_params(graph.build_from_arch({**_arch_of(model, input_size), "widths": uniform_widths(groups, ratio)}), input_size)[0]
        low, high = (ratio, high) if arch_macs <= target_macs else (low, ratio)
    return uniform_widths(groups, low)


def _arch_of(model, input_size):
    return model.arch


def run_job(job, out_dir):
    """One fine-tuning run in its own process; returns its final test top-1."""
    command = [sys.executable, "-m", "compress.train", "--weights", job["checkpoint"], "--epochs", str(job["epochs"]),
               "--out", job["output"], "--data", job["data"], "--seed", str(job["seed"])]
    if job["kd"]:
        command += ["--teacher", job["teacher"]]
    if job["scratch"]:
        command += ["--scratch"]
    log = Path(out_dir) / "logs" / (Path(job["output"]).stem + ".log")
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as handle:
        result = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        return float("nan")
    return torch.load(job["output"], map_location="cpu", weights_only=True)["meta"]["top1"]
