"""python -m compress: prune a trained CNN to a latency, MACs or params target.

    python -m compress --target-latency 0.5x                  # the embedded default: MobileNetV2 on Fashion-MNIST
    python -m compress --model mobilenet_v2 --weights teacher.pt --target-latency 2.5ms --backend torch-cuda \\
        --batch-size 8 --precision fp16 --out runs/mbv2
    python -m compress --config configs/mobilenet_v2.yaml --target-macs 0.25x
    python -m compress report runs/a runs/b --out reports/pareto
"""
import argparse
import contextlib
import math
import shlex
import sys
from importlib import resources
from pathlib import Path

import torch

from bench import latency
from compress import budget, data as datasets, finetune, graph, io, pipeline, recipes, report, zoo
from compress.errors import (ArgumentParser, TargetOutOfReach, UserError, exit_on_user_error, nonnegative_float,
                             positive_float, positive_int, seed)
from compress.select import METHODS, check_data_free, check_method

SHIPPED_TEACHER = "mbv2_fmnist_teacher.pt"
# Cheap settings where there is no GPU, so the default run fits in 10 minutes on 2 cores (16 passes and one BN batch at
# widths: 137-155 s instead of 173-197 s, top-1 within the runs' spread, reports/selection_speed_cpu/stop28/).
DEVICE_DEFAULTS = {
    "cpu": {"candidates": 4, "select_batch": 8, "heldout": 64, "max_keep_ratio": 0.02, "steps": 16, "recal_batches": 1,
            "bn_batches": 10, "finetune_epochs": 0.2, "bench_iters": 30, "bench_seconds": 1.0, "bench_warmup": 0.3, "precision": "fp32",
            "one_shot_eval": False, "compare_l1": False},
    "cuda": {"candidates": 50, "select_batch": 128, "heldout": 2000, "max_keep_ratio": 1.0, "steps": 24, "recal_batches": 8,
             "bn_batches": 50, "finetune_epochs": 1.0, "bench_iters": 200, "bench_seconds": 1.0, "bench_warmup": 0.5, "precision": "fp16",
             "one_shot_eval": True, "compare_l1": True},
}
RUN_KEYS_IGNORED = ("command", "out")
TARGET_KINDS = ("latency", "macs", "params")
# The target and what only the allocation reads: on --resume, a change here redoes the allocation and what follows it.
ALLOCATION_KEYS = ("target", "target_kind", "align", "min_share")
MACHINE_KEY = "timed_with"  # on --resume, a change here (another machine or release) redoes every timing too


def get_args_parser():
    parser = ArgumentParser(prog="python -m compress", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML recipe; flags given here override it")
    parser.add_argument("--model", help="zoo model name (the architecture comes from --weights when one is given)")
    parser.add_argument("--weights", help="trained toolkit checkpoint (python -m compress.train), or for --model at ImageNet "
                                          "shape a bare state_dict file or a torchvision weights name already in the local "
                                          "cache (e.g. ResNet50_Weights.IMAGENET1K_V2); default: the shipped MobileNetV2 "
                                          "Fashion-MNIST teacher, or random weights with --data synthetic")
    parser.add_argument("--data", help="fashion-mnist (default), imagefolder:PATH or synthetic")
    parser.add_argument("--data-dir")
    parser.add_argument("--input-size", type=positive_int,
                        help="image side of an ImageNet-shape network (random weights, a state_dict or torchvision "
                             "weights; default 224)")
    targets = parser.add_mutually_exclusive_group()
    targets.add_argument("--target-latency", help="e.g. 2.5ms, 800us or 0.5x (of the unpruned network on --backend)")
    targets.add_argument("--target-macs", help="e.g. 150M or 0.25x")
    targets.add_argument("--target-params", help="e.g. 1.5M or 0.5x")
    parser.add_argument("--backend", help=f"{', '.join(latency.BACKENDS)} (default: the fastest present)")
    parser.add_argument("--batch-size", type=positive_int, help="latency batch size (default 8)")
    parser.add_argument("--precision", choices=("fp32", "fp16"))
    parser.add_argument("--threads", type=positive_int, help="CPU threads for CPU backends")
    parser.add_argument("--method", help=f"channel selection: {', '.join(METHODS)} (default imitation: greedy, re-fitted)")
    parser.add_argument("--loss", choices=("ce", "kd"), help="GFS's selection loss (default ce; imitation always matches the "
                                                             "unpruned network, kd)")
    parser.add_argument("--candidates", type=positive_int,
                        help="channels tried per greedy step (a step that adds n channels at once, as --at-widths "
                             "does, tries at least 2n)")
    parser.add_argument("--select-batch", type=positive_int, help="training images per greedy step")
    parser.add_argument("--heldout", type=positive_int, help="held-out training images for stops, curves and re-fits")
    parser.add_argument("--tolerance", type=nonnegative_float)
    parser.add_argument("--max-keep-ratio", type=float, help="GFS stops a group at this fraction of its width at most")
    parser.add_argument("--at-widths", action=argparse.BooleanOptionalAction,
                        help="GFS or imitation: select again at the allocated widths, input to output on the progressively "
                             "cut network (default on)")
    parser.add_argument("--steps", type=positive_int,
                        help="selection at widths: stacked passes per group at most (default 24, 16 without a GPU)")
    parser.add_argument("--recal-batches", type=positive_int,
                        help="selection at widths: BN re-estimation batches after each group (default 8, 1 without "
                             "a GPU)")
    parser.add_argument("--bn-batches", type=positive_int,
                        help="training batches BN statistics are re-estimated on before the one-shot and final "
                             "evaluations (default 50, 10 without a GPU: 4.4 s instead of 20-21 s, top-1 "
                             "91.26-91.30%% against 91.14-91.26%%, reports/demo_cpu/stop25/bn_batches.log)")
    parser.add_argument("--min-share", type=float, help="no group goes under this share of the one keep ratio that meets the "
                                                        "target in every group (aligned for latency targets; default 1.0: the "
                                                        "curves only decide which groups stay wider)")
    parser.add_argument("--align", type=positive_int,
                        help=f"channel multiple (default: measured among 8/16/32 for latency targets, "
                             f"{budget.MACS_ALIGN} for MACs and params targets; 1 leaves counts as they fall)")
    parser.add_argument("--finetune-epochs", type=nonnegative_float)
    parser.add_argument("--finetune-lr", type=positive_float, help=f"peak learning rate of the fine-tune (default {finetune.FINETUNE_LR})")
    parser.add_argument("--finetune-batch", type=positive_int, help=f"fine-tuning batch size (default {finetune.FINETUNE_BATCH})")
    parser.add_argument("--finetune-warmup", type=float, help="share of the fine-tuning steps with a linear learning-rate "
                                                              f"warm-up (default {finetune.FINETUNE_WARMUP})")
    parser.add_argument("--kd", action=argparse.BooleanOptionalAction, help="distil from the unpruned network (default on)")
    parser.add_argument("--compare-l1", action=argparse.BooleanOptionalAction,
                        help="uniform L1 and Torch-Pruning's L1 (round_to the channel multiple) at equal latency, fine-tuned "
                             "as the pruned network is (default on with a GPU)")
    parser.add_argument("--bench-rounds", type=positive_int,
                        help="the final bench and the allocation's confirmation time the pruned and unpruned networks "
                             "in this many interleaved rounds (default 3)")
    parser.add_argument("--train-limit", type=positive_int,
                        help="use only N training images (Fashion-MNIST's first N, a fixed random N of an image folder)")
    parser.add_argument("--device", help="cuda or cpu (default: cuda when present)")
    parser.add_argument("--seed", type=seed)
    parser.add_argument("--out", help="run directory (default runs/<model>_<target kind>_<target>, e.g. "
                                                     "runs/mobilenet_v2_latency_0.5x)")
    existing = parser.add_mutually_exclusive_group()
    existing.add_argument("--resume", action="store_true", help="continue the run in --out")
    existing.add_argument("--overwrite", action="store_true", help="replace the run in --out")
    return parser


def resolve_config(args, argv, parser):
    """Defaults < device defaults < YAML recipe < flags; every value the run uses, in one dict."""
    common = {
        "model": "mobilenet_v2", "weights": None, "data": "fashion-mnist", "data_dir": None, "input_size": 224,
        "backend": latency.fastest_backend(), "batch_size": 8, "method": "imitation", "loss": "ce", "tolerance": 0.02,
        "align": None, "min_share": 1.0, "at_widths": True, "finetune_lr": finetune.FINETUNE_LR,
        "finetune_warmup": finetune.FINETUNE_WARMUP, "finetune_batch": finetune.FINETUNE_BATCH, "kd": True,
        "train_limit": None, "seed": 0, "bench_rounds": 3, "threads": 1, "device": "cpu", **DEVICE_DEFAULTS["cpu"],
    }
    recipe = recipes.read_recipe(args.config, parser, common) if args.config else {}
    if any(getattr(args, f"target_{kind}") is not None for kind in TARGET_KINDS):  # a target flag replaces the recipe's
        recipe = {key: value for key, value in recipe.items() if not key.startswith("target_")}
    device = args.device or recipe.get("device") or ("cuda" if torch.cuda.is_available() else "cpu")
    latency.check_device(device)
    config = {**common, "threads": 1 if device == "cpu" else latency.default_threads(),
              **DEVICE_DEFAULTS["cuda" if device.startswith("cuda") else "cpu"], "device": device}
    config.update(recipe)
    config.update({k: v for k, v in vars(args).items() if v is not None and k not in recipes.NOT_IN_RECIPES})
    kinds = [k for k in TARGET_KINDS if config.get(f"target_{k}") is not None]
    if len(kinds) != 1:
        raise UserError("give exactly one target: --target-latency (e.g. 0.5x or 2.5ms), --target-macs or --target-params")
    config["target_kind"], config["target"] = kinds[0], str(config.pop(f"target_{kinds[0]}"))
    for other in TARGET_KINDS:
        config.pop(f"target_{other}", None)
    if not 0.0 <= config["min_share"] <= 1.0:
        raise UserError(f"--min-share {config['min_share']} must lie in [0, 1]")
    if not 0.0 < config["max_keep_ratio"] <= 1.0:
        raise UserError(f"--max-keep-ratio {config['max_keep_ratio']} must lie in (0, 1]")
    finetune.check_warmup(config["finetune_warmup"], "--finetune-warmup")
    budget.parse_target(config["target"], config["target_kind"])  # malformed targets fail before any work
    check_method(config["method"])
    for key, least in (("bench_iters", 1), ("bench_seconds", 0), ("bench_warmup", 0)):  # recipe-only; flag types check the rest
        if not math.isfinite(config[key]) or config[key] < least:  # YAML reads .inf and .nan as numbers
            raise UserError(f"{key} {config[key]} must be a finite number of at least {least}")
    latency.check_backend(config["backend"])
    if args.precision is None and "precision" not in recipe and config["backend"] in latency.FP32_BACKENDS:
        config["precision"] = "fp32"  # the GPU's default, fp16, is not one this backend runs
    latency.check_precision(config["backend"], config["precision"])
    datasets.check_data_options(config["data"], config["data_dir"], config["train_limit"])
    if config["model"] not in zoo.MODEL_NAMES:
        raise UserError(f"unknown model '{config['model']}'; choose one of: {', '.join(zoo.MODEL_NAMES)}")
    if config["weights"] is None and config["data"] == "synthetic":  # latency only: the ImageNet-shape network, random weights
        config["weights"] = pipeline.RANDOM_WEIGHTS
        if args.method is None and "method" not in recipe:
            config["method"] = "l1"
        else:
            check_data_free(config["method"])
    elif config["weights"] is None:
        if config["model"] != "mobilenet_v2" or config["data"] != "fashion-mnist":
            raise UserError(f"no --weights for {config['model']} on {config['data']}; train one with python -m compress.train "
                            "(or use --data synthetic for a latency-only run with random weights)")
        config["weights"] = str(resources.files("compress") / "assets" / SHIPPED_TEACHER)
    held_arch = graph.checkpoint_arch(config["weights"]) if config["weights"] != pipeline.RANDOM_WEIGHTS else None
    if held_arch is not None:
        graph.check_model_name(args.model, held_arch, config["weights"])
        if args.input_size is not None or "input_size" in recipe:  # it would be recorded, and ignored
            trained = "x".join(map(str, held_arch["input_size"]))
            raise UserError(f"--input-size is for ImageNet-shape networks (random weights, a state_dict, torchvision "
                            f"weights); '{config['weights']}' was trained at {trained}: drop --input-size")
        config["model"] = held_arch["model"]  # the architecture comes from the weights
    elif config["weights"] != pipeline.RANDOM_WEIGHTS:  # for --model at ImageNet shape; one line saying what is wrong
        zoo.read_state_dict(config["weights"])
    if Path(config["weights"]).is_file():  # --resume after the file at that path was retrained is another run
        config["weights_sha256"] = io.file_digest(config["weights"])
    config["out"] = config.get("out") or f"runs/{config['model']}_{config['target_kind']}_{config['target']}"
    config["command"] = "python -m compress " + shlex.join(argv)
    config[MACHINE_KEY] = latency.timed_with(latency.environment(), config["backend"])
    return config


def check_target_before_replacing(config, out, timed_here):
    """Refuse a new target at or above the unpruned network against the run's baseline, before the run it would
    replace is removed (a latency measured on this machine only)."""
    kind, path = config["target_kind"], out / "baseline.json"
    if path.is_file() and (kind != "latency" or timed_here):
        budget.resolve_target(config["target"], kind, pipeline.read_stage(path)[pipeline.BASELINE_KEY[kind]])


def prepare_run_dir(config, resume, overwrite):
    """Refuse to mix runs: an existing run directory is continued (--resume, same config or another target) or
    replaced (--overwrite).

    Another target on --resume keeps the baseline, selection curves and timings (``pipeline.forget_target``): they
    do not depend on it. Another machine, or release of the backend's software, keeps only the selection curves
    (``pipeline.forget_timings``). Only a directory that holds a run of this command is ever replaced, so a mistyped --out
    cannot delete a project, and only the run's own files in it (``pipeline.RUN_FILES``). Returns whether what the
    directory holds of a run is this run's alone (new, or replaced), so a failed run may remove it.
    """
    out = io.check_output(config["out"], "--out", folder=True)
    weights = Path(config["weights"])
    if weights.is_file() and weights.resolve().parent == out.resolve() and pipeline.is_run_file(weights):
        raise UserError(f"--weights '{weights}' is a file this run writes in --out '{out}', replaced or removed as it runs; "
                        f"copy it out of the run first (e.g. cp {shlex.quote(str(weights))} pruned.pt) or give another --out")
    saved = io.read_run_config(out)
    is_run = saved is not None
    if out.exists() and any(out.iterdir()) and not is_run:
        raise UserError(f"'{out}' holds files that are not a run of python -m compress; give another --out")
    owned = not out.exists() or not any(out.iterdir()) or (is_run and overwrite)
    if resume and not is_run:  # a mistyped --out would otherwise start a whole run unnoticed
        print(f"no run in '{out}' to resume: starting a new one", file=sys.stderr)
    if is_run and overwrite:
        pipeline.remove_run_files(out)
    elif is_run:
        moved = saved.get("weights_sha256") is not None and saved.get("weights_sha256") == config.get("weights_sha256")
        ignored = RUN_KEYS_IGNORED + (("weights",) if moved else ())  # the same file at another path: a moved checkout
        changed = sorted(k for k in set(saved) | set(config) if k not in ignored and saved.get(k) != config.get(k))
        retarget = bool(changed) and set(changed) <= {*ALLOCATION_KEYS, MACHINE_KEY}
        if changed and not (retarget and resume):
            reused = "selection curves" if MACHINE_KEY in changed else "measurements for the new target"
            raise UserError(f"'{out}' holds a run with a different configuration ({', '.join(changed[:4])}); "
                            "use another --out or --overwrite" + (f", or --resume to reuse its {reused}" if retarget else ""))
        if not resume:
            raise UserError(f"'{out}' already holds this run; pass --resume to continue it or --overwrite to start again")
        if retarget:
            check_target_before_replacing(config, out, timed_here=MACHINE_KEY not in changed)
        if MACHINE_KEY in changed:
            pipeline.forget_timings(out)
        elif retarget:
            pipeline.forget_target(out)
    io.write_yaml(out / "config.yaml", config)
    return owned


@exit_on_user_error(interrupted="interrupted; the same command with --resume continues from the last finished stage")
def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["report"]:
        parser = ArgumentParser(prog="python -m compress report", description="several runs in one table and Pareto plot")
        parser.add_argument("runs", nargs="+")
        parser.add_argument("--out")
        args = parser.parse_args(argv[1:])
        if args.out:
            io.check_output(args.out, "--out", folder=True)
            if io.read_run_config(args.out) is not None:  # its files would be the run's, never removed with it
                raise UserError(f"'{args.out}' is a run directory; give the table and plot another --out")
        for run_dir in args.runs:
            if not Path(run_dir).is_dir():
                raise UserError(f"run directory '{run_dir}' does not exist; check the path")
            missing = [name for name in ("report.json", "bench.csv") if not (Path(run_dir) / name).is_file()]
            if missing:
                raise UserError(f"'{run_dir}' is not a finished run directory (no {' or '.join(missing)})")
        repeated = io.first_named_twice(args.runs)
        if repeated is not None:
            raise UserError(f"'{repeated}' is named twice; give each run once")
        return report.compare_runs(args.runs, args.out)
    for flag, value in zip(argv, argv[1:]):  # "--target-latency -1ms" would otherwise read as a flag
        if flag.startswith("--target-") and value.startswith("-") and value[1:2].isdigit():
            raise UserError(f"malformed {flag[len('--target-'):]} target '{value}': a target must be positive")
    parser = get_args_parser()
    args = parser.parse_args(argv)
    config = resolve_config(args, argv, parser)
    created = not Path(config["out"]).exists()
    owned = prepare_run_dir(config, args.resume, args.overwrite)
    try:
        summary = pipeline.run(config)
    except TargetOutOfReach as err:  # what the run measured so far does not depend on the target
        out = config["out"]
        raise UserError(f"{err} ({out} keeps its measurements: add --out {out} --resume to a run with another target "
                        "to reuse them)") from None
    except UserError:
        if owned:  # bad input found mid-run (weights, data): leave nothing half-written
            pipeline.remove_run_files(Path(config["out"]))
            if created:
                with contextlib.suppress(OSError):  # the folder too, unless other files are in it
                    Path(config["out"]).rmdir()
        raise
    print((Path(config["out"]) / "report.md").read_text())
    return summary
