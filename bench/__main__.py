"""python -m bench MODEL|CHECKPOINT|RUN_DIR|ONNX ... : latency table of several models on several backends.

    python -m bench resnet50 mobilenet_v2 --backend torch-cuda,ort-cpu --batch-size 1,64 --precision fp16 \\
        --input-size 224 --repeat 2 --out reports/zoo_h100
    python -m bench runs/mbv2 vendor/model.onnx --backend ort-cpu --batch-size 8

A zoo name gets random weights at ImageNet shape (1000 classes); a checkpoint is measured as saved, and
a run directory as it ships: ONNX Runtime times its model.onnx and TensorRT its model.engine (the
checkpoint is exported the export's way where the run has none; column ``timed``), as is a folder
python -m export wrote for another checkpoint (runs/mbv2/ft5_export/). An ONNX file from
anywhere is timed as it is on the ONNX Runtime or TensorRT backends, its MACs counted from its graph.
CPU backends always measure fp32 (the table says so).
"""
import argparse
import datetime
import shlex
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from bench import latency
from compress import graph, io, macs, report, zoo
from compress.errors import (ArgumentParser, UserError, comma_list, exit_on_user_error, image_size, nonnegative_float, positive_int,
                             positive_int_list)
from export import onnx as onnx_files

# A peer measurement on an H100 (PyTorch fp16, channels_last, CUDA-graph replay, median of 200), in ms.
PEER_H100_FP16 = {("resnet50", 1): 0.95, ("resnet50", 64): 4.95, ("resnet18", 1): 0.36, ("resnet18", 64): 1.63,
                  ("mobilenet_v2", 1): 0.69, ("mobilenet_v2", 64): 2.66, ("mobilenet_v3_large", 1): 0.80,
                  ("mobilenet_v3_large", 64): 2.30}


def get_args_parser():
    parser = ArgumentParser(prog="python -m bench", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help="zoo names, checkpoints (.pt), run directories (or export folders) or ONNX files")
    parser.add_argument("--backend", type=comma_list, default=latency.fastest_backend(),
                        help=f"comma list of {', '.join(latency.BACKENDS)}")
    parser.add_argument("--batch-size", type=positive_int_list, default="1", help="comma list, e.g. 1,8,64")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "fp16"))
    parser.add_argument("--input-size", type=image_size, help="224 or CxHxW; default: the checkpoint's or ONNX file's, or 3x224x224 for zoo names")
    parser.add_argument("--num-classes", type=positive_int, default=1000, help="for zoo names")
    parser.add_argument("--threads", type=positive_int, default=None, help="CPU threads (default min(4, cores))")
    parser.add_argument("--no-cuda-graph", action="store_true", help="torch-cuda: launch eagerly instead of replaying a graph")
    parser.add_argument("--memory-format", choices=tuple(latency.MEMORY_FORMATS), help=f"{' or '.join(latency.MEMORY_FORMATS)}: the layout of a torch backend's "
                                                "weights and input (default channels_last on CUDA, contiguous on CPU)")
    parser.add_argument("--min-iters", type=positive_int, default=200)
    parser.add_argument("--min-seconds", type=nonnegative_float, default=2.0)
    parser.add_argument("--warmup-seconds", type=nonnegative_float, default=1.0)
    parser.add_argument("--repeat", type=positive_int, default=1, help="measure each cell this many times, in rounds; within a "
                                                               "round the models of one input size take turns every iteration, so drift falls on all")
    parser.add_argument("--out", help="write bench.csv/json/md and latency_vs_macs.png here")
    return parser


def load_model(source, args):
    """(name, model, input size, run directory or None, MACs, params) for a zoo name, a toolkit checkpoint, a run
    directory or an ONNX file (whose path is the model: ONNX Runtime and TensorRT time it as it is)."""
    path, input_size = Path(source), args.input_size and tuple(args.input_size)
    if path.is_file() and path.suffix == ".engine":
        raise UserError(f"'{source}' is a TensorRT engine, which records neither its MACs nor the settings it was built "
                        f"for; pass its run directory ({path.parent}) or the .onnx it was built from")
    if path.is_file() and path.suffix == ".onnx":
        size, file_macs, params = onnx_file(path, input_size, args.backend, args.batch_size, args.precision)
        return str(source), path, size, None, file_macs, params
    run_dir = path if path.is_dir() else None
    if run_dir:
        path = io.exported_checkpoint(run_dir)
        if path is None:
            raise UserError(f"'{source}' is a directory without model.pt or an export of a checkpoint; pass a run "
                            "directory, a checkpoint or a zoo name")
    if path.is_file():
        model, arch = graph.load_checkpoint(path)
        if input_size and input_size[0] != arch["input_size"][0]:
            raise UserError(f"'{source}' takes {arch['input_size'][0]}-channel images, not --input-size "
                            f"{'x'.join(map(str, input_size))}; give {arch['input_size'][0]}xHxW (it was trained at "
                            f"{'x'.join(map(str, arch['input_size']))})")
        if input_size and input_size != tuple(arch["input_size"]):
            run_dir = None  # its model.onnx and model.engine take the checkpoint's size only: export at the one asked for
        size = input_size or tuple(arch["input_size"])
    elif source in zoo.MODEL_NAMES:
        size = input_size or (3, 224, 224)
        model = zoo.build_model(source, args.num_classes, size[0]).eval()
    else:
        raise UserError(f"'{source}' is not a zoo model ({', '.join(zoo.MODEL_NAMES)}), a checkpoint, a run directory or "
                        "an ONNX file")
    return (str(source), model, size, run_dir, *macs.count_macs_params(model, size))


def onnx_file(path, input_size, backends, batch_sizes, precision):
    """(input size, MACs, params) of an ONNX file; refused, before any timing, where it cannot run as asked:
    on a torch backend, on TensorRT at a precision other than the one its weights hold, at a batch size its input
    fixes otherwise, or at an image size it does not take."""
    torch_backends = [backend for backend in backends if backend.startswith("torch")]
    if torch_backends:
        raise UserError(f"'{path}' is an ONNX file, which {torch_backends[0]} cannot run; time it with ort-cpu, ort-cuda, "
                        "ort-trt or tensorrt, or pass its checkpoint")
    onnx_graph, batch, fixed = onnx_files.read_image_input(path)
    held = onnx_files.precision(onnx_graph)
    if "tensorrt" in backends and held != precision:  # strongly typed: TensorRT runs the types the file holds
        raise UserError(f"'{path}' holds {held} weights and TensorRT builds the precision a file holds; pass --precision "
                        f"{held}, or convert the file (python -m modelopt.onnx.autocast for fp16)")
    if batch is not None and any(size != batch for size in batch_sizes):
        raise UserError(f"'{path}' has a fixed batch of {batch}; pass --batch-size {batch}, or export it with a dynamic "
                        "batch (python -m export does)")
    shown = "x".join(str(dim or "?") for dim in fixed)
    if input_size and any(dim is not None and dim != size for dim, size in zip(fixed, input_size)):
        raise UserError(f"'{path}' takes images of {shown}, not --input-size {'x'.join(map(str, input_size))}; drop "
                        "--input-size or export it at that size")
    if not input_size and None in fixed:
        raise UserError(f"'{path}' leaves its image size free ({shown}); pass --input-size")
    size = input_size or fixed
    return (size, *onnx_files.count_macs_params(onnx_graph, size))


def measure_all(args):
    """Rows of (model, run) for every backend and batch size; with --repeat, the models' runs interleave."""
    # Checked before any timing: a refusal after an hour of other backends' rows wastes the hour.
    precisions = {backend: latency.check_precision(latency.check_backend(backend),
                                                   "fp32" if backend in latency.CPU_BACKENDS else args.precision)
                  for backend in args.backend}
    members = []
    for source in args.models:
        members.append(load_model(source, args))
    sizes = {size for _, _, size, _, _, _ in members}
    if len(sizes) > 1:
        raise UserError(f"the models take different input sizes ({', '.join('x'.join(map(str, s)) for s in sorted(sizes))}), "
                        "so their latencies do not compare; pass --input-size or bench them separately")
    size = sizes.pop()
    timed = {(backend, batch_size): [latency.shipped_file(run_dir, backend, precision, batch_size) or model
                                     for _, model, _, run_dir, _, _ in members]
             for backend, precision in precisions.items() for batch_size in args.batch_size}  # refusals before any timing
    rows = []
    for backend, precision in precisions.items():
        for batch_size in args.batch_size:
            rounds = latency.measure_rounds(timed[backend, batch_size], backend, batch_size, precision, size,
                                            rounds=args.repeat, min_iters=args.min_iters, min_seconds=args.min_seconds,
                                            warmup_seconds=args.warmup_seconds, threads=args.threads,
                                            cuda_graph=not args.no_cuda_graph, memory_format=args.memory_format)
            for (name, _, _, _, model_macs, params), subject, results in zip(members, timed[backend, batch_size], rounds):
                for run, result in enumerate(results):
                    rows.append({"model": name, "run": run, "timed": latency.timed_as(subject, backend), "macs": model_macs,
                                 "params": params, **result})
                    print(f"{name:24s} {backend:10s} {precision} b{batch_size:<4d} run {run}: median "
                          f"{result['median_ms']:.3f} ms p90 {result['p90_ms']:.3f} cv {result['cv']:.3f}", flush=True)
    return latency.require_same_settings(rows)


def peer_comparable(args, rows):
    """Whether the H100 peer figures apply: their settings (fp16, CUDA graph, channels_last, 224 px, 1000 classes, H100)."""
    return ("torch-cuda" in args.backend and "H100" in latency.device_name("cuda") and args.precision == "fp16"
            and not args.no_cuda_graph and args.memory_format in (None, "channels_last") and args.num_classes == 1000
            and all(row["input_size"] == "3x224x224" for row in rows))


def summarise(rows, with_peer=False):
    """One row per model/backend/batch: median over repeats, their agreement, and speedup against the first model."""
    table = pd.DataFrame(rows)
    keys = ["model", "backend", "precision", "batch_size"]
    summary = table.groupby(keys, sort=False).agg(
        timed=("timed", "first"), macs=("macs", "first"), params=("params", "first"), median_ms=("median_ms", "median"),
        p90_ms=("p90_ms", "median"), p99_ms=("p99_ms", "median"), cv=("cv", "max"),
        repeat_spread=("median_ms", lambda s: s.max() / s.min() - 1)).reset_index()
    summary["throughput_img_s"] = summary["batch_size"] / summary["median_ms"] * 1000.0  # of the median, for any --repeat
    first = summary["model"].iloc[0]
    reference = summary[summary["model"] == first].set_index(["backend", "batch_size"])["median_ms"]
    summary["speedup_vs_first"] = [reference.get((b, n), float("nan")) / m for b, n, m in
                                   zip(summary["backend"], summary["batch_size"], summary["median_ms"])]
    if with_peer:
        summary["peer_h100_ms"] = [PEER_H100_FP16.get((m, n)) if b == "torch-cuda" else None
                                   for m, b, n in zip(summary["model"], summary["backend"], summary["batch_size"])]
    return summary


def write_report(summary, rows, out, argv):
    out = Path(out)
    environment = latency.environment()
    io.write_text(out / "bench.csv", summary.to_csv(index=False))
    io.write_json(out / "bench.json", {"environment": environment, "rows": rows})
    devices = ", ".join(f"{backend} on {latency.timed_on(environment, backend)}" for backend in dict.fromkeys(summary["backend"]))
    shown = summary.copy()
    shown["MACs (M)"] = (shown.pop("macs") / 1e6).round(1)
    shown["params (M)"] = (shown.pop("params") / 1e6).round(2)
    lines = [
        "# Latency", "",
        f"- command: `python -m bench {shlex.join(argv)}`",
        f"- device: {devices}; " + ", ".join(f"{k} {v}" for k, v in environment.items()),
        f"- date: {datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}",
        "- method: warm-up by time, then at least --min-iters runs and --min-seconds; torch-cuda times are CUDA events "
        "(it replays a CUDA graph unless --no-cuda-graph, cudnn.benchmark, channels_last unless --memory-format "
        "says otherwise), the other backends' perf_counter_ns around a call that returns once the outputs are ready "
        "(column clock; ONNX Runtime's input and output bound on the provider's device, so no route times a host copy), "
        "CPU backends on fixed threads; "
        "CPU backends measure fp32. The models of one input size take turns one iteration at a time, in --repeat rounds "
        "that each warm up again; median_ms, p90_ms and p99_ms are the median over the rounds, cv the largest of them, and "
        "repeat_spread = max/min - 1 of the rounds' medians.", "",
        shown.round(4).to_markdown(index=False), "",
    ]
    io.write_text(out / "bench.md", "\n".join(lines))
    figure, axis = plt.subplots(figsize=(7, 4.5))
    for (backend, batch_size), part in summary.groupby(["backend", "batch_size"]):
        axis.scatter(part["macs"] / 1e6, part["median_ms"], label=f"{backend}, batch {batch_size}")
        for model, x, y in zip(part["model"], part["macs"] / 1e6, part["median_ms"]):
            axis.annotate(Path(model).name, (x, y), fontsize=7)
    axis.set(xlabel="MACs per image (M)", ylabel="median latency (ms)", title="Latency is not MACs", xscale="log", yscale="log")
    axis.legend(fontsize=8)
    report.save_figure(figure, out / "latency_vs_macs.png")
    print("\n".join(lines))


@exit_on_user_error
def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = get_args_parser().parse_args(argv)
    for flag, values in (("models", args.models), ("--backend", args.backend), ("--batch-size", args.batch_size)):
        repeated = io.first_named_twice(values)
        if repeated is not None:  # one row would summarise two cells as if they were --repeat rounds
            raise UserError(f"{flag} names {repeated} twice; give each once (--repeat times every cell again)")
    if args.out:
        io.check_output(args.out, "--out", folder=True)  # before the measuring, not after it
        if io.read_run_config(args.out) is not None:
            raise UserError(f"'{args.out}' is a run directory of python -m compress, whose bench.csv is the run's final "
                            "bench; give another --out")
    rows = measure_all(args)
    summary = summarise(rows, with_peer=peer_comparable(args, rows))
    if args.out:
        write_report(summary, rows, args.out, argv)
    else:
        print(summary.to_string(index=False))
    return summary


if __name__ == "__main__":
    main()
