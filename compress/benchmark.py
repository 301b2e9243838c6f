"""Benchmark of selection methods at equal MACs: one-shot, fine-tuned, distilled, and from scratch.

    python -m compress.benchmark --config configs/bench_methods_fmnist.yaml --out reports/methods_fmnist

Every method is compared on the same shapes: each MACs target keeps one ratio in every group (as
Torch-Pruning's reference does). The classic criteria order each group once, against the unpruned
network; GFS and imitation then select at those widths the published way, groups input to output,
each on the network the earlier cuts left, with BN re-estimated after each (imitation also re-fits
each group's readers to the unpruned network's outputs by least squares). Every pruned network is
rebuilt physically and measured one-shot (with and without BN re-estimation), after 1 epoch of
fine-tuning, after 5 epochs with and without KD, and against the same shape trained from scratch for the
teacher's epoch budget (Scratch-E); ``--columns ftE`` adds fine-tuning for that budget: the papers' claim
against "Rethinking the Value of Network Pruning" is ftE above Scratch-E. Fine-tuning jobs run as
parallel processes (these networks are launch-bound on a GPU, so several fit at once), each resuming
from its last epoch if the benchmark was interrupted.
"""
import argparse
import copy
import datetime
import json
import math
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import torch

from bench import latency
from compress import budget, data as datasets, finetune, graph, io, macs, recipes, report, train
from compress.errors import (ArgumentParser, UserError, comma_list, exit_on_user_error, nonnegative_int, positive_float,
                             positive_int, seed)
from compress.select import SEQUENTIAL_METHODS, apply_selection, check_method, select_at_widths_on_data, select_channels, speed

# column -> (epochs, KD from the teacher); None: the epoch budget, as Scratch-E trains (and, like it, without KD)
FINETUNE_SCHEDULES = {"ft1": (1, False), "ft5": (5, False), "ft5_kd": (5, True), "ftE": (None, False)}
STAGES = ("select", "prune", "finetune", "report")
# What only this benchmark writes in its --out: a folder holding none of it, and not empty, is somebody else's.
BENCHMARK_FILES = ("selection_*.json", "pruned.json", "results.json", "models", "finetuned", "logs")


def get_args_parser():
    parser = ArgumentParser(prog="python -m compress.benchmark", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML recipe; flags override it")
    parser.add_argument("--teacher", help="teacher checkpoint (compress.train output)")
    parser.add_argument("--data", default="fashion-mnist")
    parser.add_argument("--data-dir")
    parser.add_argument("--methods", type=comma_list, default="gfs,imitation,l1,bnscale,random,uniform")
    parser.add_argument("--targets", type=comma_list, default="0.25x,0.10x", help="MACs targets, relative or absolute")
    parser.add_argument("--candidates", type=positive_int, default=50)
    parser.add_argument("--select-batch", type=positive_int, default=128)
    parser.add_argument("--heldout", type=positive_int, default=2000)
    parser.add_argument("--steps", type=positive_int, default=24, help="GFS/imitation at widths: stacked passes per group at most")
    parser.add_argument("--recal-batches", type=positive_int, default=8, help="GFS/imitation at widths: BN re-estimation batches after each group")
    parser.add_argument("--epoch-budget", type=positive_float, default=None, help="epochs of ftE and Scratch-E (default: the teacher's)")
    parser.add_argument("--columns", type=comma_list, default="ft1,ft5,ft5_kd,scratch", help=f"any of {','.join(FINETUNE_SCHEDULES)},scratch")
    parser.add_argument("--jobs", type=positive_int, default=4, help="fine-tuning processes at once")
    parser.add_argument("--finetune-lr", type=positive_float, default=finetune.FINETUNE_LR)
    parser.add_argument("--finetune-batch", type=positive_int, default=finetune.FINETUNE_BATCH, help="batch size of the fine-tunes "
                                                                                           "(Scratch-E keeps the teacher's 256)")
    parser.add_argument("--finetune-warmup", type=float, default=finetune.FINETUNE_WARMUP,
                        help="share of each fine-tune's steps warming up")
    parser.add_argument("--speed-steps", type=nonnegative_int, default=2, help="greedy steps timed per group and scheme (0: skip)")
    parser.add_argument("--profile", action="store_true", help="after the timed comparison, one more step of each scheme per "
                                                               "group under torch.profiler: selection_profile.txt")
    parser.add_argument("--train-limit", type=positive_int, default=None, help="use only this many training images")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", help="the benchmark's folder (required, here or as out: in the --config recipe)")
    parser.add_argument("--seed", type=seed, default=0)
    parser.add_argument("--stages", type=comma_list, default=",".join(STAGES), help="comma list of stages to run")
    return parser


def parse_args(argv=None):
    parser = get_args_parser()
    args = parser.parse_args(argv)
    if args.config:
        parser.set_defaults(**recipes.read_recipe(args.config, parser))
        args = parser.parse_args(argv)
    latency.check_device(args.device)
    finetune.check_warmup(args.finetune_warmup, "--finetune-warmup")
    for stage in args.stages:
        if stage not in STAGES:
            raise UserError(f"unknown stage {stage!r} in --stages; choose from {', '.join(STAGES)}")
    for column in args.columns:
        if column not in (*FINETUNE_SCHEDULES, "scratch"):
            raise UserError(f"unknown column {column!r} in --columns; choose from {', '.join(FINETUNE_SCHEDULES)}, scratch")
    for method in args.methods:
        check_method(method)  # before any stage: prune alone would otherwise look for selection_<unknown>.json
    for target in args.targets:  # before the selections, not at the prune stage after them
        budget.parse_target(target, "macs")
    if not args.teacher:
        raise UserError("no teacher checkpoint; pass --teacher (train one with python -m compress.train)")
    datasets.check_labelled(args.data)
    datasets.check_data_options(args.data, args.data_dir, args.train_limit)
    if not args.out:
        raise UserError("no --out; pass the folder the benchmark writes (or out: in the --config recipe)")
    io.check_output(args.out, "--out", folder=True)
    out = Path(args.out)
    if out.is_dir() and any(out.iterdir()) and not any(any(out.glob(pattern)) for pattern in BENCHMARK_FILES):
        raise UserError(f"--out '{out}' holds files that are not a benchmark's; give a new or empty folder, or an earlier "
                        "benchmark's to continue it")
    return args


def load_teacher(args):
    model, arch = graph.load_checkpoint(args.teacher)
    data = datasets.load_data(args.data, args.data_dir, stem=arch["stem"], batch_size=256, train_limit=args.train_limit)
    return model.to(args.device), arch, data


def selection_settings(args, method):
    """What a selection depends on besides the method: a cached one is reused only under the same."""
    settings = {"teacher": io.file_digest(args.teacher), "data": args.data, "train_limit": args.train_limit,
                "select_batch": args.select_batch, "heldout": args.heldout, "seed": args.seed}
    if method in SEQUENTIAL_METHODS:
        settings.update(candidates=args.candidates, steps=args.steps, recal_batches=args.recal_batches)
    return settings


def read_selection(path, args, method):
    """A selection an earlier call wrote; one made under other settings is refused rather than reported as this one."""
    if not path.exists():
        raise UserError(f"no '{path}'; run --stages select first")
    selection, settings = io.read_json(path), selection_settings(args, method)
    if "settings" not in selection:
        raise UserError(f"'{path}' does not record the settings it was selected under; delete it to select again")
    differ = sorted(key for key in settings if selection["settings"].get(key) != settings[key])
    if differ:
        raise UserError(f"'{path}' was selected under other {', '.join(differ)}; delete it to select again, or use another --out")
    return selection


def select_stage(args, model, arch, data, out):
    """Selections of the classic criteria (one per method, reused for every target; GFS and imitation select per
    target in the prune stage) and the selection-speed comparison."""
    input_size = tuple(arch["input_size"])
    draw, heldout = datasets.selection_batches(data, args.select_batch, args.heldout, args.device, args.seed)
    if args.speed_steps:  # its own stream of the same batches: Taylor's selection below draws the same with or without it
        images, labels = datasets.selection_batches(data, args.select_batch, args.heldout, args.device, args.seed)[0]()
        result = speed.compare(model, input_size, images, labels, candidates=args.candidates, steps=args.speed_steps)
        io.write_json(out / "selection_speed.json", result)
        print(json.dumps(result, indent=1))
        if args.profile:
            io.write_text(out / "selection_profile.txt", speed.profile(model, input_size, images, labels, candidates=args.candidates))
    for method in args.methods:
        path = out / f"selection_{method}.json"
        if method in SEQUENTIAL_METHODS:
            continue
        if path.exists():
            read_selection(path, args, method)  # refused if made under other settings
            continue
        speed.synchronize(args.device)
        selection = select_channels(model, input_size, method, draw, heldout, candidates=args.candidates, seed=args.seed)
        speed.synchronize(args.device)
        io.write_json(path, {**selection, "settings": selection_settings(args, method)})
        print(f"{method}: selection {selection['seconds']:.1f} s")


def select_sequentially(args, model, arch, data, method, widths, name, out):
    """(selection, pruned network) of ``method`` at ``widths``, groups input to output on the progressively cut
    network; cached as the selection JSON beside the pruned checkpoint."""
    path, checkpoint = out / f"selection_{name}.json", out / "models" / f"{name}.pt"
    if path.exists() and checkpoint.exists():
        return read_selection(path, args, method), graph.load_checkpoint(checkpoint)[0]
    speed.synchronize(args.device)
    selection, pruned = select_at_widths_on_data(  # its seed, whichever methods ran before
        model, tuple(arch["input_size"]), widths, data, device=args.device, select_batch=args.select_batch,
        heldout=args.heldout, recal_batches=args.recal_batches, seed=args.seed, method=method, candidates=args.candidates,
        steps=args.steps)
    speed.synchronize(args.device)
    graph.save_pruned(checkpoint, pruned.cpu(), arch)
    io.write_json(path, {**selection, "settings": selection_settings(args, method)})
    print(f"{name}: selection {selection['seconds']:.1f} s")
    return selection, pruned


def target_widths(model, arch, targets):
    """{MACs target: the uniform widths every method is pruned to}; a target at or above the teacher's MACs, or under
    one channel per group, is refused here, before any selection."""
    input_size = tuple(arch["input_size"])
    full_macs = macs.count_macs_params(model, input_size)[0]
    return {text: budget.uniform_widths(model, input_size, budget.resolve_target(text, "macs", full_macs))[0]
            for text in targets}


def prune_stage(args, model, arch, data, widths_at, out):
    """Selection per (method, target) at the targets' widths ``widths_at``, the physically pruned checkpoints, and
    one-shot accuracy; pruned.json keeps the rows earlier calls made of other methods and targets, each naming its
    checkpoint relative to ``out`` (the later stages may run from another directory)."""
    input_size = tuple(arch["input_size"])
    full_macs, teacher = macs.count_macs_params(model, input_size)[0], io.file_digest(args.teacher)
    rows = []
    for method in args.methods:
        for target_text, widths in widths_at.items():
            name, checkpoint = f"{method}_{target_text}", out / "models" / f"{method}_{target_text}.pt"
            network_before = io.file_digest(checkpoint) if checkpoint.exists() else None
            if method in SEQUENTIAL_METHODS:
                selection, pruned = select_sequentially(args, model, arch, data, method, widths, name, out)
            else:
                selection = read_selection(out / f"selection_{method}.json", args, method)
                pruned = apply_selection(copy.deepcopy(model).cpu(), input_size, selection, widths)
                graph.save_pruned(checkpoint, pruned, arch)
            if io.file_digest(checkpoint) != network_before:
                forget_training(out, name)
            one_shot = finetune.evaluate(pruned, data, args.device)["top1"]
            torch.manual_seed(args.seed)  # the batches BN is re-estimated on: the same whichever rows ran before
            one_shot_bn = finetune.evaluate(finetune.recalibrate_bn(pruned, data, args.device), data, args.device)["top1"]
            pruned_macs, pruned_params = macs.count_macs_params(pruned, input_size)
            rows.append({"target": target_text, "method": method, "macs": pruned_macs, "macs_kept": pruned_macs / full_macs,
                         "params": pruned_params, "one_shot": one_shot, "one_shot_bn": one_shot_bn,
                         "selection_seconds": selection["seconds"], "checkpoint": str(checkpoint.relative_to(out)),
                         "teacher": teacher})
            print(f"{name}: MACs {pruned_macs / 1e6:.1f}M ({pruned_macs / full_macs:.3f}x) one-shot {one_shot:.4f} / BN {one_shot_bn:.4f}")
    made = {(row["method"], row["target"]) for row in rows}
    earlier = io.read_json(out / "pruned.json") if (out / "pruned.json").exists() else []
    io.write_json(out / "pruned.json", [row for row in earlier if (row["method"], row["target"]) not in made] + rows)


def forget_training(out, name):
    """Remove what the finetune stage trained from row ``name``'s network, which the prune stage just replaced: a state
    an interrupted job left would be refused by its resumed job, a finished network by ``check_trained_outputs``."""
    for column in (*FINETUNE_SCHEDULES, "scratch"):
        for suffix in (".pt", ".pt.state"):
            (out / "finetuned" / f"{name}_{column}{suffix}").unlink(missing_ok=True)


def shape_of(checkpoint):
    """The pruned widths as a key: Scratch-E trains each distinct shape once."""
    return json.dumps(graph.read_checkpoint(checkpoint)["arch"]["widths"], sort_keys=True)


def finetune_jobs(args, rows, out):
    """Every fine-tuning run of the table; Scratch-E once per distinct architecture."""
    jobs, scratch_of = [], {}
    epoch_budget = args.epoch_budget or graph.read_checkpoint(args.teacher).get("meta", {}).get("epochs")
    if epoch_budget is None and any(column in ("scratch", "ftE") for column in args.columns):
        raise UserError(f"'{args.teacher}' does not record its epochs (python -m compress.train does); pass --epoch-budget")
    for row in rows:
        name = Path(row["checkpoint"]).stem
        for column in args.columns:
            if column == "scratch":
                shape = shape_of(out / row["checkpoint"])
                if shape in scratch_of:
                    continue
                scratch_of[shape] = name
                jobs.append({"row": name, "column": column, "epochs": epoch_budget, "kd": False, "scratch": True, "lr": 0.1})
            else:
                epochs, kd = FINETUNE_SCHEDULES[column]
                jobs.append({"row": name, "column": column, "epochs": epochs or epoch_budget, "kd": kd, "scratch": False,
                             "lr": args.finetune_lr})
    for job in jobs:
        job["output"] = str(out / "finetuned" / f"{job['row']}_{job['column']}.pt")
        job["checkpoint"] = str(out / "models" / f"{job['row']}.pt")
    return jobs, scratch_of


def train_command(args, job):
    """The compress.train command of one job: fine-tunes at the fine-tuning batch with a warm-up; Scratch-E trains
    with the recipe the shipped teacher was trained with (lr 0.1, weight decay 5e-4, batch 256, no warm-up), fixed
    here rather than read from the teacher."""
    command = [sys.executable, "-m", "compress.train", "--weights", job["checkpoint"], "--epochs", str(job["epochs"]),
               "--lr", str(job["lr"]), "--weight-decay", str(finetune.TEACHER_WEIGHT_DECAY), "--data", args.data,
               "--out", job["output"], "--device", args.device, "--seed", str(args.seed), "--resume"]
    command += ["--data-dir", args.data_dir] if args.data_dir else []
    command += ["--train-limit", str(args.train_limit)] if args.train_limit else []  # the data the other columns saw
    command += ["--teacher", args.teacher] if job["kd"] else []
    if job["scratch"]:
        return command + ["--scratch"]
    return command + ["--lr-warmup", str(args.finetune_warmup), "--batch-size", str(args.finetune_batch)]


# What makes two compress.train commands train the same network; the device, the data folder and the paths of the weight
# files do not (check_trained_outputs compares the files' contents).
TRAINING_SETTINGS = ("scratch", "data", "train_limit", "epochs", "batch_size", "lr", "weight_decay", "lr_warmup",
                     "label_smoothing", "seed")


def check_trained_outputs(args, jobs):
    """Outputs of earlier calls are kept only where this call would train the same: same settings, same starting (and
    teacher) weights. Anything else is refused before any job starts, rather than reported as this call's result."""
    for job in jobs:
        if not Path(job["output"]).exists():
            continue
        meta = graph.read_checkpoint(job["output"]).get("meta", {})
        if "command" not in meta or "digests" not in meta:
            raise UserError(f"'{job['output']}' does not record how it was trained; delete it to train again")
        recorded = vars(train.parse_args(shlex.split(meta["command"])[3:]))
        wanted = vars(train.parse_args(train_command(args, job)[3:]))
        differ = [key for key in TRAINING_SETTINGS if recorded[key] != wanted[key]]
        if meta["digests"] != [io.file_digest(path) for path in (job["checkpoint"], job["kd"] and args.teacher) if path]:
            differ.append("weights (the starting or teacher weights are other files)")
        if differ:
            raise UserError(f"'{job['output']}' was trained with other {', '.join(differ)}; delete it to train again, "
                            "or use another --out")


def check_training_batches(args, data):
    """Refuse, before any job starts, a batch no training split of ``data`` fills: every such job would fail, in its log."""
    images = len(data.train.dataset)
    batches = {f"--finetune-batch {args.finetune_batch}": args.finetune_batch} if set(args.columns) - {"scratch"} else {}
    if "scratch" in args.columns:
        batches[f"Scratch-E's batch of {train.NEW_NETWORK_RECIPE['batch_size']}"] = train.NEW_NETWORK_RECIPE["batch_size"]
    for name, batch in batches.items():
        if batch > images:
            raise UserError(f"{name} is more than the {images} training images; use more (--train-limit) or a smaller "
                            "batch, or leave the scratch column out of --columns")


def run_job(args, job, out):
    """One training run in its own process (they share the GPU); returns the final test top-1, NaN where the run failed
    (its log says why)."""
    if not Path(job["output"]).exists():
        command = train_command(args, job)
        log = out / "logs" / f"{job['row']}_{job['column']}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a") as handle:  # a resumed job appends
            if subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT).returncode != 0:
                print(f"failed: {' '.join(command)} (see {log})")
                return float("nan")
        Path(job["output"] + ".state").unlink(missing_ok=True)
    return graph.read_checkpoint(job["output"])["meta"]["top1"]


def trained_columns(result, network):
    """The fine-tuning columns of a results.json row that were trained from ``network`` (a checkpoint's digest): none
    once a prune stage has replaced that network."""
    if result.get("network") != network:
        return {}
    return {key: result[key] for key in (*FINETUNE_SCHEDULES, "scratch") if key in result}


def finetune_stage(args, out):
    """The training columns of the rows of --methods and --targets; columns trained by earlier calls are kept while
    the pruned network they started from is still the row's (a prune stage run since replaced it: they are dropped)."""
    results = out / "results.json"
    earlier = {row["checkpoint"]: row for row in io.read_json(results)} if results.exists() else {}
    rows = []
    for row in read_pruned(out):
        network = io.file_digest(out / row["checkpoint"])
        rows.append({**trained_columns(earlier.get(row["checkpoint"], {}), network), **row, "network": network})
    chosen = [row for row in rows if row["method"] in args.methods and row["target"] in args.targets]
    check_pruned_from(chosen, args, out)
    jobs, scratch_of = finetune_jobs(args, chosen, out)
    check_trained_outputs(args, jobs)
    started = time.perf_counter()
    with ThreadPoolExecutor(args.jobs) as pool:
        top1s = list(pool.map(lambda job: run_job(args, job, out), jobs))
    by_key = {(job["row"], job["column"]): top1 for job, top1 in zip(jobs, top1s)}
    for row in chosen:
        name = Path(row["checkpoint"]).stem
        shape = shape_of(out / row["checkpoint"])
        for column in args.columns:
            source = scratch_of.get(shape) if column == "scratch" else name
            row[column] = by_key.get((source, column))
    io.write_json(results, rows)
    print(f"{len(jobs)} training runs in {time.perf_counter() - started:.0f} s")
    failed = [job for job, top1 in zip(jobs, top1s) if math.isnan(top1)]
    if failed:
        log = out / "logs" / f"{failed[0]['row']}_{failed[0]['column']}.log"
        last = (log.read_text().strip().splitlines() or ["no output"])[-1]
        raise UserError(f"{len(failed)} of {len(jobs)} training runs failed, the first ({failed[0]['row']} "
                        f"{failed[0]['column']}) with '{last}' (log: {log}); the same command trains them again")


COLUMNS = {
    "macs_kept": "MACs kept", "one_shot": "one-shot, as selected", "one_shot_bn": "one-shot (BN re-est.)", "ft1": "1 epoch",
    "ft5": "5 epochs", "ft5_kd": "5 epochs + KD", "ftE": "E epochs", "scratch": "Scratch-E", "selection_seconds": "selection s",
}


def read_pruned(out):
    if not (out / "pruned.json").exists():
        raise UserError(f"no pruned networks in '{out}'; run --stages prune first (after select)")
    return io.read_json(out / "pruned.json")


def check_pruned_from(rows, args, out):
    """Refuse rows a prune stage made from another teacher than --teacher (switched between calls on one --out): their
    fine-tunes would distil from, and their report credit, a network they were not cut from."""
    teacher = io.file_digest(args.teacher)
    for row in rows:
        if row.get("teacher") != teacher:
            raise UserError(f"the network of {row['method']} at {row['target']} in '{out}' was pruned from another teacher "
                            f"than '{args.teacher}'; run --stages prune for it with this --teacher, or use another --out")


def report_stage(args, out, argv):
    """report.md and report.csv of the rows of --methods and --targets, with the fine-tuning columns the finetune
    stage trained from the network each row has now; a row no prune stage made is refused rather than left out."""
    pruned = {(row["method"], row["target"]): row for row in read_pruned(out)}
    missing = [(method, target) for method in args.methods for target in args.targets if (method, target) not in pruned]
    if missing:
        raise UserError(f"no pruned network of {missing[0][0]} at {missing[0][1]} in '{out}'; run --stages select,prune "
                        "for it, or leave it out of --methods and --targets")
    check_pruned_from([pruned[(method, target)] for method in args.methods for target in args.targets], args, out)
    results = io.read_json(out / "results.json") if (out / "results.json").exists() else []
    trained = {(row["method"], row["target"]): row for row in results}
    rows = []
    for method in args.methods:
        for target in args.targets:
            row = pruned[(method, target)]
            rows.append({**row, **trained_columns(trained.get((method, target), {}), io.file_digest(out / row["checkpoint"]))})
    table = pd.DataFrame(rows)
    for column in ("one_shot", "one_shot_bn", *FINETUNE_SCHEDULES, "scratch"):
        if column in table:
            table[column] = (100 * table[column]).round(1)
    table["macs_kept"] = table["macs_kept"].round(3)
    table["selection_seconds"] = table["selection_seconds"].round(1)
    shown = table[["target", "method"] + [c for c in COLUMNS if c in table]].rename(columns=COLUMNS)
    checkpoint = graph.read_checkpoint(args.teacher)
    teacher, arch = checkpoint.get("meta", {}), checkpoint["arch"]
    speed_file = out / "selection_speed.json"
    speed_result = io.read_json(speed_file) if speed_file.exists() else None
    lines = [
        f"# Selection methods at equal MACs: {arch['model']} ({arch['stem']} stem) on {args.data}",
        "",
        f"- command: `python -m compress.benchmark {' '.join(argv)}`",
        f"- device: {latency.device_name(args.device)}; torch {torch.__version__}",
        f"- date: {datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}",
        f"- teacher: {args.teacher}, test top-1 {report.percent(teacher.get('top1'), missing='unknown')} "
        f"after {teacher.get('epochs', '?')} epochs "
        f"(`{teacher.get('command', 'command not recorded')}`)",
        f"- accuracy: top-1 (%) on the {args.data} test split; BN statistics re-estimated before every evaluation but "
        "'one-shot, as selected': the network as its selection left it (the criteria keep the unpruned network's "
        "statistics; GFS and imitation re-estimate them after each group they cut, so theirs are re-estimated already)",
        "- widths: every method keeps one ratio in every group (the same shapes); GFS and imitation select at those widths input "
        "to output, each group on the network the earlier cuts left, BN re-estimated after each (selection seconds: that pass); "
        "imitation re-fits each cut group's readers by least squares to the unpruned network's outputs",
        "",
        shown.to_markdown(index=False),
        "",
    ]
    if speed_result:
        lines += ["## Selection cost", "", "```json", json.dumps(speed_result, indent=1), "```", ""]
    io.write_text(out / "report.md", "\n".join(lines))
    io.write_text(out / "report.csv", table.to_csv(index=False))
    print("\n".join(lines))


@exit_on_user_error(interrupted="interrupted; the same command continues from the selections and epochs it finished")
def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    out = Path(args.out)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    try:
        model, arch, data = load_teacher(args)
        widths_at = target_widths(model, arch, args.targets)
        if "select" in args.stages:
            select_stage(args, model, arch, data, out)
        if "prune" in args.stages:
            prune_stage(args, model, arch, data, widths_at, out)
        if "finetune" in args.stages:
            check_training_batches(args, data)
            finetune_stage(args, out)
        if "report" in args.stages:
            report_stage(args, out, argv)
    except UserError:
        if created and not any(out.iterdir()):  # refused before writing anything: no empty folder left behind
            out.rmdir()
        raise


if __name__ == "__main__":
    main()
