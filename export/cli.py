"""python -m export RUN_DIR|CHECKPOINT: ONNX (parity-checked in ONNX Runtime) and, on request, a TensorRT engine.

    python -m export runs/mbv2                      # model.onnx + export.json (parity on the run's test images)
    python -m export runs/mbv2 --fp16               # also model_fp16.onnx: what TensorRT (trtexec too) builds fp16 from
    python -m export runs/mbv2 --tensorrt --fp16 --max-batch 64   # and model.engine, built from it
    python -m export runs/mbv2 --route ort-cuda     # also check ONNX Runtime's CUDA / TensorRT providers
    python -m export runs/mbv2/ft5.pt               # another checkpoint: into runs/mbv2/ft5_export/

A parity failure exits non-zero and records "passed": false in export.json.
"""
import argparse
import os
import sys
from pathlib import Path

import torch

from compress import graph, io
from compress.errors import ArgumentParser, UserError, exit_on_user_error, positive_int
from export import parity
from export.onnx import MAX_OPSET, export_onnx

ROUTES = tuple(backend for backend in parity.ORT_PROVIDERS if backend != "ort-cpu")  # ONNX Runtime's GPU routes
# The parity check's images run as one batch in PyTorch and in each runtime: 1024 at 224 px already holds GBs.
MAX_SAMPLES = 1024


def get_args_parser():
    parser = ArgumentParser(prog="python -m export", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help="run directory (with model.pt) or a toolkit checkpoint")
    parser.add_argument("--opset", type=int, default=17)
    parser.add_argument("--tensorrt", action="store_true", help="also build model.engine with TensorRT")
    parser.add_argument("--fp16", action="store_true", help="also model_fp16.onnx (fp16 weights and compute, fp32 input "
                                                             "and output; TensorRT builds the precision a file holds), "
                                                             "and with --tensorrt an fp16 engine built from it")
    parser.add_argument("--min-batch", type=int, default=1)
    parser.add_argument("--opt-batch", type=int, default=8)
    parser.add_argument("--max-batch", type=int, default=64)
    parser.add_argument("--route", action="append", default=[], choices=ROUTES,
                        help="also check an ONNX Runtime execution provider")
    parser.add_argument("--samples", type=positive_int, default=64, help="images used for the parity checks")
    return parser


def locate(source):
    """(output directory, checkpoint path) for a run directory or a checkpoint file.

    A run's model.pt exports into its run; any other checkpoint into a folder beside it named after it
    (runs/x/ft5.pt -> runs/x/ft5_export/), so exporting another model never replaces what a run ships.
    """
    path = Path(source)
    if path.is_dir() and (checkpoint := io.exported_checkpoint(path)):  # a run, or such a folder again (--tensorrt later)
        return path, checkpoint
    if path.is_file():  # run() loads it, with a one-line error when it is not a checkpoint
        return (path.parent if path.name == "model.pt" else path.with_name(f"{path.stem}_export")), path
    raise UserError(f"'{source}' is neither a run directory with model.pt, a folder this command exported a checkpoint "
                    "into, nor a checkpoint file")


def parity_images(run_dir, input_size, samples):
    """Real test images when the run beside the checkpoint names its data, synthetic input otherwise, or where that
    data cannot be read any more (moved or deleted since the run; this command has no flag to point at it)."""
    config, inputs = io.read_run_config(run_dir), "synthetic input"
    if config is not None and config.get("data", "synthetic") != "synthetic":
        from compress import data as datasets

        try:
            data = datasets.load_data(config["data"], config.get("data_dir"), input_size=input_size, batch_size=samples)
            return data.prepare(next(iter(data.val))[0][:samples]), f"{config['data']} test images"
        except UserError as err:
            print(f"warning: parity checked on synthetic input: the run's data cannot be read ({err})", file=sys.stderr)
            inputs = f"synthetic input (the run's data cannot be read: {err})"
    return torch.randn(samples, *input_size, generator=torch.Generator().manual_seed(0)), inputs  # the same every export


def check(reference, candidate, threshold):
    """Parity of ``candidate`` logits against ``reference``, with whether it is within ``threshold`` relative."""
    result = parity.compare(reference, candidate)
    return {**result, "passed": result["rel_diff"] <= threshold}


def run(source, *, opset=17, tensorrt=False, fp16=False, min_batch=1, opt_batch=8, max_batch=64, routes=(), samples=64):
    """Export, check parity on every requested route and write export.json (passed or not); returns its contents."""
    if not 17 <= opset <= MAX_OPSET:
        raise UserError(f"--opset {opset} is not one this toolkit exports with torch {torch.__version__}; use 17 to {MAX_OPSET}")
    if samples > MAX_SAMPLES:
        raise UserError(f"--samples {samples}: the parity check runs them as one batch; give at most {MAX_SAMPLES}")
    if not 1 <= min_batch <= opt_batch <= max_batch:
        raise UserError(f"the TensorRT profile needs 1 <= --min-batch ({min_batch}) <= --opt-batch ({opt_batch}) "
                        f"<= --max-batch ({max_batch})")
    # Before anything is written: the stale files below would be gone and no new ones made.
    if tensorrt:
        from export.tensorrt import require_tensorrt

        require_tensorrt()
    for route in routes:
        provider = parity.ORT_PROVIDERS[route][0]
        if not torch.cuda.is_available():  # onnxruntime-gpu lists its GPU providers on any machine
            raise UserError(f"--route {route} runs ONNX Runtime's {provider} on a CUDA GPU, and PyTorch sees none here; "
                            "drop --route")
        if not parity.has_provider(provider):
            raise UserError(f"--route {route}: {provider} is not in this ONNX Runtime; install onnxruntime-gpu with its "
                            "CUDA libraries")
    out_dir, checkpoint = locate(source)
    with io.removed_on_failure(out_dir):  # a folder made here and not finished (Ctrl-C) is not left half-written
        model, arch = graph.load_checkpoint(checkpoint)
        for stale in ("export.json", "model.engine", "model_fp16.onnx"):  # never an earlier model's verdict or engine left
            (out_dir / stale).unlink(missing_ok=True)
        input_size = tuple(arch["input_size"])
        onnx_path = export_onnx(model, input_size, out_dir / "model.onnx", opset=opset)
        images, inputs = parity_images(checkpoint.parent, input_size, samples)
        reference, onnx_logits = parity.torch_logits(model, images), parity.ort_logits(onnx_path, images)
        result = {"onnx": onnx_path.name, "inputs": inputs, "parity_fp32": check(reference, onnx_logits, 1e-4)}
        for route in routes:
            route_logits = parity.ort_logits(onnx_path, images, parity.ORT_PROVIDERS[route])
            result[f"parity_{route}"] = check(reference, route_logits, 1e-4)
        fp16_path = None
        if fp16:  # ONNX Runtime's CPU provider runs most fp16 nodes in fp32: this checks the graph and the rounded weights
            fp16_path = export_onnx(model, input_size, out_dir / "model_fp16.onnx", opset=opset, fp16=True)
            result["parity_fp16_onnx"] = check(reference, parity.ort_logits(fp16_path, images), 1e-2)
        if tensorrt:
            from export.tensorrt import TIMING_CACHE, EngineRunner, build_engine

            source = fp16_path or onnx_path  # the engine's precision is its file's (strongly typed)
            engine = build_engine(source, out_dir / "model.engine", input_size, min_batch=min_batch, opt_batch=opt_batch,
                                  max_batch=max_batch, timing_cache=out_dir / TIMING_CACHE)
            batch = images[: max_batch]
            engine_logits = EngineRunner(engine, len(batch), input_size).logits(batch)
            result["parity_tensorrt"] = check(onnx_logits[: max_batch], engine_logits, 1e-2 if fp16 else 1e-4)
            # what python -m bench checks before timing the shipped engine
            result.update(engine_onnx=source.name, engine_fp16=fp16, engine_profile=[min_batch, opt_batch, max_batch])
        # Which checkpoint these files are, so python -m bench times them only for it: the folder's own model.pt, or the
        # checkpoint beside it that a *_export/ folder was made from.
        result["checkpoint"] = Path(os.path.relpath(checkpoint.resolve(), out_dir.resolve())).as_posix()
        result["checkpoint_sha256"] = io.file_digest(checkpoint)
        io.write_json(out_dir / "export.json", result)
        for name, value in result.items():
            if isinstance(value, dict):
                print(f"{name}: max abs {value['max_abs_diff']:.2e}, relative {value['rel_diff']:.2e}, "
                      f"top-1 agreement {value['top1_agreement']:.3f} -> {'ok' if value['passed'] else 'FAILED'}")
    return result


def exit_on_parity_failure(result, out_dir):
    """Exit with code 1 when any parity check in ``result`` (an export.json) failed."""
    failed = [name for name, value in result.items() if isinstance(value, dict) and not value["passed"]]
    if failed:
        print(f"parity check failed: {', '.join(failed)} (recorded in {Path(out_dir) / 'export.json'})", file=sys.stderr)
        sys.exit(1)


@exit_on_user_error
def main(argv=None):
    args = get_args_parser().parse_args(argv)
    result = run(args.source, opset=args.opset, tensorrt=args.tensorrt, fp16=args.fp16, min_batch=args.min_batch,
                 opt_batch=args.opt_batch, max_batch=args.max_batch, routes=args.route, samples=args.samples)
    exit_on_parity_failure(result, locate(args.source)[0])
    return result
