"""Train a network: a teacher from scratch, or fine-tune / re-train (Scratch-E) a pruned checkpoint.

    python -m compress.train --model mobilenet_v2 --stem small --data fashion-mnist --epochs 15 --out teacher.pt
    python -m compress.train --weights runs/x/model.pt --teacher teacher.pt --epochs 5 --out runs/x/ft5.pt
    python -m compress.train --weights runs/x/model.pt --scratch --epochs 15 --out runs/x/scratch.pt

A new network and --scratch train by default as the shipped teacher was trained; --weights alone fine-tunes by default
as python -m compress does. The output is a toolkit checkpoint (state_dict + architecture) whose ``meta`` records the
command, the final test top-1, the device and the date. Launch under ``torchrun`` for several GPUs.
"""
import argparse
import datetime
import shlex
import sys
from pathlib import Path

import torch

from bench import latency
from compress import data as datasets, finetune, graph, io, pipeline, zoo
from compress.errors import (ArgumentParser, UserError, exit_on_user_error, nonnegative_float, nonnegative_int,
                             positive_float, positive_int, seed)

# The defaults of the training recipe: a new network (or Scratch-E) trains as the shipped teacher was trained, and a
# pruned checkpoint fine-tunes as python -m compress fine-tunes it.
NEW_NETWORK_RECIPE = {"batch_size": 256, "lr": 0.1, "weight_decay": finetune.TEACHER_WEIGHT_DECAY, "lr_warmup": 0.0}
FINETUNE_RECIPE = {"batch_size": finetune.FINETUNE_BATCH, "lr": finetune.FINETUNE_LR,
                   "weight_decay": finetune.FINETUNE_WEIGHT_DECAY, "lr_warmup": finetune.FINETUNE_WARMUP}


def get_args_parser():
    parser = ArgumentParser(prog="python -m compress.train", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help=f"zoo model for a new network: {', '.join(zoo.MODEL_NAMES)}")
    parser.add_argument("--stem", choices=zoo.STEMS, help="for a new network (default small); --weights brings its own")
    parser.add_argument("--weights", help="start from this toolkit checkpoint (its architecture, stem and weights)")
    parser.add_argument("--teacher", help="distil from this checkpoint (KD)")
    parser.add_argument("--scratch", action="store_true", help="re-initialise the architecture first (Scratch-E)")
    parser.add_argument("--data", default="fashion-mnist")
    parser.add_argument("--data-dir")
    parser.add_argument("--train-limit", type=positive_int,
                        help="use only N training images (Fashion-MNIST's first N, a fixed random N of an image folder)")
    parser.add_argument("--epochs", type=positive_float, default=15)
    default = lambda key: f"default {NEW_NETWORK_RECIPE[key]} (new network, --scratch) or {FINETUNE_RECIPE[key]} (--weights)"
    parser.add_argument("--batch-size", type=positive_int, help=default("batch_size"))
    parser.add_argument("--lr", type=positive_float, help=default("lr"))
    parser.add_argument("--weight-decay", type=nonnegative_float, help=default("weight_decay"))
    parser.add_argument("--lr-warmup", type=float, help=f"share of the steps with a linear learning-rate warm-up, {default('lr_warmup')}")
    parser.add_argument("--label-smoothing", type=float, default=0.1)
    parser.add_argument("--workers", type=nonnegative_int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seed", type=seed, default=0)
    parser.add_argument("--resume", action="store_true",
                        help="continue from OUT.state if it exists (kept after the last epoch, so a finished training "
                             "resumes without a step and one with other settings is refused; delete it once done)")
    parser.add_argument("--out", required=True, help="output checkpoint (.pt)")
    return parser


def parse_args(argv):
    """The flags, with the recipe's defaults for what they leave out: a fine-tune's for --weights, else a new network's."""
    args = get_args_parser().parse_args(argv)
    for key, value in (FINETUNE_RECIPE if args.weights and not args.scratch else NEW_NETWORK_RECIPE).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def load_network(args, world_size):
    """(network, arch, data): the checkpoint of --weights, whose stem a --stem naming another would be ignored for (so
    it is refused), or a new --model; the data prepared for the network's stem."""
    model = arch = None
    if args.weights:
        model, arch = graph.load_checkpoint(args.weights)
        graph.check_model_name(args.model, arch, args.weights)
        if args.stem and args.stem != arch["stem"]:
            raise UserError(f"--stem {args.stem} but '{args.weights}' holds a network with the {arch['stem']} stem; drop --stem")
    elif not args.model:
        raise UserError("nothing to train; pass --model NAME for a new network or --weights CHECKPOINT")
    stem = arch["stem"] if arch else args.stem or "small"
    data = datasets.load_data(args.data, args.data_dir, stem=stem, batch_size=args.batch_size // world_size,
                              workers=args.workers, train_limit=args.train_limit)
    if arch:
        datasets.check_fits(arch, data, f"--weights '{args.weights}'")
        return (finetune.reinitialise(model) if args.scratch else model), arch, data
    model = zoo.build_model(args.model, data.num_classes, data.input_size[0], stem)
    return model, graph.make_arch(args.model, data.num_classes, data.input_size[0], stem, data.input_size), data


@exit_on_user_error(interrupted="interrupted; the same command with --resume continues from the last finished epoch")
def main(argv=None):
    args = parse_args(argv)
    latency.check_device(args.device)
    io.check_output(args.out, "--out", folder=False)  # before the epochs, not after them
    out = Path(args.out)
    if io.read_run_config(out.parent) is not None and pipeline.is_run_file(out):
        raise UserError(f"--out '{args.out}' is a file of the python -m compress run in '{out.parent}', whose export, bench "
                        f"and report describe what it holds; give another name (e.g. {out.parent / 'ft.pt'})")
    datasets.check_labelled(args.data)
    datasets.check_data_options(args.data, args.data_dir, args.train_limit)
    finetune.check_warmup(args.lr_warmup, "--lr-warmup")
    if not 0.0 <= args.label_smoothing < 1.0:
        raise UserError(f"--label-smoothing {args.label_smoothing} must lie in [0, 1)")
    torch.manual_seed(args.seed)
    rank, world_size = finetune.setup_distributed(args.device)
    if args.batch_size % world_size:  # each process loads batch_size // world_size images a step
        raise UserError(f"--batch-size {args.batch_size} is the global batch; give a multiple of the {world_size} processes")
    model, arch, data = load_network(args, world_size)
    args.stem = arch["stem"]  # in the settings a resumed training is checked against
    teacher = None
    if args.teacher:
        teacher, teacher_arch = graph.load_checkpoint(args.teacher)
        datasets.check_fits(teacher_arch, data, f"--teacher '{args.teacher}'")
    settings = {k: v for k, v in vars(args).items() if k not in ("resume", "workers", "device")}
    settings["digests"] = [io.file_digest(path) for path in (args.weights, args.teacher) if path]  # not just their paths
    history = finetune.train(model, data, epochs=args.epochs, lr=args.lr, weight_decay=args.weight_decay,
                             label_smoothing=args.label_smoothing, warmup=args.lr_warmup, teacher=teacher, device=args.device,
                             checkpoint=args.out + ".state", resume=args.resume, settings=settings)
    if args.weights:  # a pruned network's statistics, re-estimated on the training split as the pipeline evaluates it
        finetune.recalibrate_bn(model, data, args.device)
    metrics = finetune.evaluate(model, data, args.device)
    if rank == 0:
        meta = {
            "command": "python -m compress.train " + shlex.join(sys.argv[1:] if argv is None else argv),
            "top1": metrics["top1"], "test_loss": metrics["loss"], "epochs": history[-1]["epoch"],  # as run: whole steps
            "history": history,
            "digests": settings["digests"],  # of --weights and --teacher: what the paths in the command held
            "device": latency.device_name(args.device), "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
        graph.save_checkpoint(args.out, model.float().to(memory_format=torch.contiguous_format).cpu(), arch, meta=meta)
        print(f"test top-1 {metrics['top1']:.4f}  loss {metrics['loss']:.4f}  -> {args.out}")
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    return metrics


if __name__ == "__main__":
    main()
