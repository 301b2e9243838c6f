"""Latency of one model on one backend, measured the way trtexec does: warm up by time, then time
at least ``min_iters`` runs and at least ``min_seconds``; report the distribution, not one number.

torch-cuda is timed with CUDA events (the stream's time from one event to the next, gaps waiting for the
host's launches included; optionally replaying a captured CUDA graph, with cudnn.benchmark and channels_last).
The CPU backends, ONNX Runtime's GPU providers and TensorRT are timed with perf_counter_ns around a call that
returns once the outputs are ready (ORT's input and outputs bound on the provider's device, as the other backends'
are, so no route times a host copy); each row records its ``clock``. A run directory's own ``model.onnx`` and
``model.engine`` are timed as they ship (``shipped_file``). CPU backends run on a fixed, recorded thread count.
fp32 is fp32 on every backend: TF32 is off for torch-cuda, ONNX Runtime's CUDA provider and TensorRT alike.
Results carry their settings, and only results with equal settings are compared.
"""
import contextlib
import copy
import os
import platform
import re
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from compress.errors import UserError
from compress.io import exported_checkpoint, file_digest, read_export_record
from export import parity

BACKENDS = ("torch-cpu", "torch-cuda", "ort-cpu", "ort-cuda", "ort-trt", "tensorrt")
CPU_BACKENDS = ("torch-cpu", "ort-cpu")
FP32_BACKENDS = ("torch-cpu", "ort-cpu", "ort-cuda")  # they run the fp32 network (or its fp32 ONNX) as it is


def check_device(device):
    """Refuse a --device string torch would reject mid-run, or a GPU this machine does not have."""
    if device != "cpu" and not device.startswith("cuda"):
        raise UserError(f"unknown device '{device}'; use cpu or cuda")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device '{device}' asked for, but no CUDA GPU is visible; use --device cpu")
    return device


def check_backend(backend):
    """Refuse unknown backends and ones this machine cannot run, saying what is missing."""
    if backend not in BACKENDS:
        raise UserError(f"unknown backend '{backend}'; choose one of: {', '.join(BACKENDS)}")
    if backend not in CPU_BACKENDS and not torch.cuda.is_available():
        raise UserError(f"backend {backend} is unavailable: no CUDA GPU is visible to PyTorch on this machine; "
                        "ort-cpu and torch-cpu run here (--backend ort-cpu --precision fp32)")
    if backend in parity.ORT_PROVIDERS and not parity.has_provider(parity.ORT_PROVIDERS[backend][0]):
        raise UserError(f"backend {backend} is unavailable: ONNX Runtime has no {parity.ORT_PROVIDERS[backend][0]} here "
                        "(install onnxruntime-gpu with its CUDA/TensorRT libraries)")
    if backend == "tensorrt":
        from export.tensorrt import require_tensorrt

        require_tensorrt()
    return backend


def check_precision(backend, precision):
    """Refuse a precision the backend cannot run, before anything is measured."""
    if backend in FP32_BACKENDS and precision != "fp32":
        raise UserError(f"{backend} measures fp32 only; use --precision fp32, or "
                        "torch-cuda, ort-trt or tensorrt for fp16")
    return precision


def fastest_backend():
    """The default deployment backend of this machine."""
    return "torch-cuda" if torch.cuda.is_available() else "ort-cpu"


def default_threads():
    return min(4, os.cpu_count() or 1)


def cpu_name():
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def device_name(device):
    """The processor a torch device names: the GPU's model, or the CPU's from /proc/cpuinfo."""
    return torch.cuda.get_device_name(device) if torch.device(device).type == "cuda" else cpu_name()


def environment():
    """What a latency number depends on besides the model."""
    import onnxruntime

    info = {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__, "cpu": cpu_name(), "cpu_count": os.cpu_count()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
        try:
            import subprocess

            info["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                            capture_output=True, text=True).stdout.strip()
        except OSError:
            pass
    try:
        import tensorrt

        info["tensorrt"] = tensorrt.__version__
    except ImportError:
        pass
    return info


# The software that runs each backend: another release of it is another latency axis.
RUNTIME = {"torch-cpu": "torch", "torch-cuda": "torch", "ort-cpu": "onnxruntime", "ort-cuda": "onnxruntime",
           "ort-trt": "onnxruntime", "tensorrt": "tensorrt"}


def timed_on(environment, backend):
    """The processor a backend's latency was measured on: the CPU for CPU backends even where a GPU is present."""
    return environment["cpu"] if backend in CPU_BACKENDS else environment.get("gpu", environment["cpu"])


def timed_with(environment, backend):
    """The processor, the backend's software and (on a GPU) the driver a latency depends on, as one line: timings
    taken with another of them are not comparable, nor reusable."""
    runtime = RUNTIME[backend]
    line = f"{timed_on(environment, backend)}, {runtime} {environment.get(runtime, 'unknown')}"
    return line if backend in CPU_BACKENDS else f"{line}, driver {environment.get('driver', 'unknown')}"


MEMORY_FORMATS = {"channels_last": torch.channels_last, "contiguous": torch.contiguous_format}
DEFAULT_MEMORY_FORMAT = {"torch-cuda": "channels_last", "torch-cpu": "contiguous"}  # narrow pruned layers run slower NHWC on CPU
SETTING_KEYS = ("backend", "batch_size", "precision", "input_size", "threads", "cuda_graph", "memory_format", "protocol")
# What the backends time, versioned: 2 = ONNX Runtime on IOBinding, TensorRT engines with the shipped profile; 3 = models
# timed together take turns every iteration. A run's cached timings from another protocol are timed again, not mixed
# with this one's.
PROTOCOL = 3


def settings(backend, batch_size, precision, input_size, threads=None, cuda_graph=True, memory_format=None):
    """The knobs that make two measurements comparable (``SETTING_KEYS``)."""
    on_cpu = backend in CPU_BACKENDS
    memory_format = (memory_format or DEFAULT_MEMORY_FORMAT.get(backend)) if backend.startswith("torch") else None
    return {"backend": backend, "clock": "cuda events" if backend == "torch-cuda" else "host perf_counter_ns",
            "batch_size": int(batch_size), "precision": precision,
            "input_size": "x".join(str(s) for s in input_size),
            "threads": int(threads or default_threads()) if on_cpu else None,
            "cuda_graph": bool(cuda_graph) if backend == "torch-cuda" else None,
            "memory_format": memory_format, "protocol": PROTOCOL}


STATISTICS = ("median_ms", "p90_ms", "p99_ms", "mean_ms", "std_ms", "cv", "throughput_img_s")


def statistics_ms(samples_ms, batch_size):
    samples = np.asarray(samples_ms, float)
    median = float(np.median(samples))
    return {"median_ms": median, "p90_ms": float(np.percentile(samples, 90)), "p99_ms": float(np.percentile(samples, 99)),
            "mean_ms": float(samples.mean()), "std_ms": float(samples.std()), "cv": float(samples.std() / samples.mean()),
            "throughput_img_s": batch_size / median * 1000.0, "iterations": len(samples)}


def _time_interleaved(steps, min_iters, min_seconds, warmup_seconds):
    """Per (step, clock) of ``steps``, its per-iteration times, the models taking turns one iteration at a time.

    Warm up by time, then time until every model has ``min_iters`` samples and at least ``min_seconds`` have passed.
    Turns of one iteration, not blocks of a second: this VM switches between two speeds within seconds (the teacher
    at 18.5-21 or 23-28 ms), so blocks put a pruned network at 0.38 to 0.73 of the unpruned one and turns at 0.44 to
    0.56 over 50 trials (reports/paired_timing_cpu/). The first calls (autotuning, an execution provider building its
    engine) run before the warm-up's clock starts: counted in it, one slow call could use up the whole warm-up.
    """
    on_gpu = any(clock is _cuda_clock for _, clock in steps)
    for step, _ in steps:
        step()
    if on_gpu:
        torch.cuda.synchronize()
    started = time.perf_counter()
    while time.perf_counter() - started < warmup_seconds:
        for step, _ in steps:
            step()
    if on_gpu:
        torch.cuda.synchronize()  # the first timed sample must not start behind a queue of warm-up work
    samples, started = [[] for _ in steps], time.perf_counter()
    while len(samples[0]) < min_iters or time.perf_counter() - started < min_seconds:
        for (step, clock), taken in zip(steps, samples):
            taken.append(clock(step))
    return samples


def _cpu_clock(step):
    started = time.perf_counter_ns()
    step()
    return (time.perf_counter_ns() - started) / 1e6


def _cuda_clock(step):
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    step()
    end.record()
    end.synchronize()
    return start.elapsed_time(end)


def _torch_step(model, backend, batch_size, precision, input_size, cuda_graph, memory_format):
    model = copy.deepcopy(model)  # converted to the backend's device, dtype and layout below; the caller's stays as it is
    layout = MEMORY_FORMATS[memory_format]
    if backend == "torch-cpu":
        model = model.float().cpu().eval().to(memory_format=layout)
        images = torch.randn(batch_size, *input_size).contiguous(memory_format=layout)
        return lambda: model(images), _cpu_clock
    dtype = torch.float16 if precision == "fp16" else torch.float32
    model = model.to("cuda", dtype).eval().to(memory_format=layout)
    images = torch.randn(batch_size, *input_size, device="cuda", dtype=dtype).contiguous(memory_format=layout)
    if not cuda_graph:
        return lambda: model(images), _cuda_clock
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.inference_mode():  # captured as it is timed: no autograd bookkeeping
        with torch.cuda.stream(side):
            for _ in range(3):  # cudnn autotuning and allocator warm-up before capture
                model(images)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            output = model(images)

    def replay():
        graph.replay()
        return output

    # The graph reads the copy's weights and this input at the addresses it was captured with: freed when this function
    # returned, their memory went to the next model's copy or back to the driver (an illegal memory access on the H200).
    replay.bound = model, images
    return replay, _cuda_clock


def _ort_step(onnx_path, backend, batch_size, precision, input_size, threads):
    import onnxruntime

    provider_options = {"TensorrtExecutionProvider": {"trt_fp16_enable": precision == "fp16"}}
    session = parity.ort_session(onnx_path, parity.ORT_PROVIDERS[backend], provider_options,
                                 threads=threads if backend == "ort-cpu" else None)
    # Input and output stay on the provider's device, as torch-cuda's and TensorRT's do: session.run() would time a
    # host-to-GPU copy of the batch (38 MB at 64 x 224 px) and the copy back on the GPU routes.
    device = "cpu" if backend == "ort-cpu" else "cuda"
    binding = session.io_binding()
    images = np.random.randn(batch_size, *input_size).astype(np.float32)
    bound = onnxruntime.OrtValue.ortvalue_from_numpy(images, device, 0)
    binding.bind_ortvalue_input(session.get_inputs()[0].name, bound)
    for output in session.get_outputs():
        binding.bind_output(output.name, device, 0)

    def step():
        session.run_with_iobinding(binding)
        binding.synchronize_outputs()  # returns once the device has finished, so the host clock spans the inference

    # On the CPU the OrtValue wraps ``images`` without a copy, and older ONNX Runtime releases' bindings hold neither.
    step.bound = images, bound
    return step, _cpu_clock


# How the backends say an allocation failed: torch's CPU allocator, CUDA, ONNX Runtime's arena.
OUT_OF_MEMORY = re.compile(r"can't allocate memory|out of memory|failed to allocate memory", re.IGNORECASE)


def measure(model, backend, batch_size, precision, input_size, **options):
    """Latency statistics and settings of ``model`` on ``backend``: an nn.Module (ONNX/engine made on demand), an ONNX
    file, or a shipped model.onnx / model.engine path (``shipped_file``)."""
    return median_over_rounds(measure_rounds([model], backend, batch_size, precision, input_size, rounds=1, **options)[0])


def measure_rounds(models, backend, batch_size, precision, input_size, *, rounds=3, min_iters=50, min_seconds=1.0,
                   warmup_seconds=0.5, threads=None, cuda_graph=True, memory_format=None, timing_cache=None):
    """Per model, the statistics of each of ``rounds`` rounds, ``models`` taking turns one iteration at a time.

    A CPU's speed drifts and bursts within a minute; one block per model put a 5% burst on one side of a speedup
    (reports/demo_cpu/stop18_final/: 7.01 ms in the final bench, 6.62 and 6.72 ms re-timed right after), and on a VM
    switching speeds within seconds, blocks of a second put a 0.51 speedup anywhere from 0.38 to 0.73
    (reports/paired_timing_cpu/). Turns put every burst on every model. Rounds warm up again and show the spread.
    TensorRT engines built here share the ``timing_cache`` file (by default one for this call), so a build reuses the
    kernel timings of the builds before it instead of timing every layer again.
    """
    check_backend(backend)
    check_precision(backend, precision)
    threads = threads or default_threads()
    input_size = tuple(input_size)
    recorded = settings(backend, batch_size, precision, input_size, threads, cuda_graph, memory_format)
    if backend.startswith("torch") and recorded["memory_format"] not in MEMORY_FORMATS:
        raise UserError(f"unknown memory format '{memory_format}'; choose one of: {', '.join(MEMORY_FORMATS)}")
    cpu_threads = threads if backend == "torch-cpu" else torch.get_num_threads()
    try:
        with tempfile.TemporaryDirectory() as scratch, torch_threads(cpu_threads), torch_cuda_flags(backend == "torch-cuda"):
            timing_cache = timing_cache or Path(scratch) / "timing.cache"
            steps = [_prepare(model, backend, batch_size, precision, input_size, threads, cuda_graph, recorded["memory_format"],
                              Path(scratch) / str(index), timing_cache) for index, model in enumerate(models)]
            per_model = [[] for _ in models]
            with torch.inference_mode():
                for _ in range(rounds):
                    for samples, results in zip(_time_interleaved(steps, min_iters, min_seconds, warmup_seconds), per_model):
                        results.append({**recorded, **statistics_ms(samples, batch_size)})
    except Exception as err:  # numpy's MemoryError, torch's RuntimeError (CUDA's OutOfMemoryError), ONNX Runtime's Fail
        if not (isinstance(err, MemoryError) or OUT_OF_MEMORY.search(str(err))):
            raise
        raise UserError(f"a batch of {batch_size} images of {recorded['input_size']} does not fit in {backend}'s memory "
                        f"({str(err).splitlines()[0][:120]}); lower --batch-size") from None
    return per_model


def median_over_rounds(results):
    """One model's rounds as one result: each statistic's median over rounds, so one disturbed round does not move it."""
    combined = {**results[0], **{key: float(np.median([r[key] for r in results])) for key in STATISTICS}}
    combined["throughput_img_s"] = combined["batch_size"] / combined["median_ms"] * 1000.0  # of the median, for any count
    combined["iterations"] = sum(r["iterations"] for r in results)
    if len(results) > 1:
        combined["round_medians_ms"] = [r["median_ms"] for r in results]
    return combined


def shipped_file(run_dir, backend, precision, batch_size):
    """The run directory's (or export folder's) own ``model.onnx`` (ONNX Runtime backends) or ``model.engine``
    (tensorrt), so a run is timed as it ships; None where there is none to time (torch backends, no run directory, not
    exported, a failed parity check, or files exported from another checkpoint than the one export.json names) and the
    checkpoint is exported as the export would. An engine built for another precision, or whose profile does not
    cover the batch, is a one-line refusal: rebuilding it silently would time an engine nobody has."""
    from export.tensorrt import check_batch, deployment_profile

    name = {"tensorrt": "model.engine"}.get(backend, "model.onnx")
    if run_dir is None or backend.startswith("torch") or not (Path(run_dir) / name).is_file():
        return None
    checks = read_export_record(run_dir)
    checkpoint = exported_checkpoint(run_dir)
    if not all(value.get("passed") for value in checks.values() if isinstance(value, dict)) or checkpoint is None or \
            checks.get("checkpoint_sha256") != file_digest(checkpoint):
        return None
    path = Path(run_dir) / name
    if backend == "tensorrt":
        if "engine_profile" not in checks:  # an engine this export did not build
            return None
        built_for = "fp16" if checks["engine_fp16"] else "fp32"
        smallest, _, largest = checks["engine_profile"]
        if built_for != precision or not smallest <= batch_size <= largest:
            rebuild = " ".join(f"--{flag}-batch {value}" for flag, value in zip(("min", "opt", "max"),
                                                                                 deployment_profile(batch_size)))
            rebuild = f"python -m export {run_dir} --tensorrt{' --fp16' if precision == 'fp16' else ''} {rebuild}"
            if built_for != precision:
                raise UserError(f"{path} was built for {built_for}; pass --precision {built_for}, or rebuild it: {rebuild}")
            check_batch((smallest, largest), batch_size, hint=f"pass a batch in it, or rebuild it: {rebuild}")
    return path


def timed_as(subject, backend):
    """What a row timed, for its ``timed`` column: a file's name (a shipped engine's with the batch profile it was tuned
    for, as export.json beside it records), the module (torch backends), or an export made for the measurement."""
    if isinstance(subject, Path) and subject.suffix == ".engine":
        profile = read_export_record(subject.parent)["engine_profile"]  # shipped_file checked it is there
        return f"{subject.name} (profile {'/'.join(map(str, profile))})"
    return subject.name if isinstance(subject, Path) else "module" if backend.startswith("torch") else "exported for the bench"


def deployable(model, backend, batch_size, precision, input_size, scratch, timing_cache=None):
    """What ``backend`` runs of ``model``, made as the export makes it: the module on torch backends, an ONNX file on
    ONNX Runtime (an nn.Module exported into the ``scratch`` folder), an engine with the shipped profile on TensorRT
    (built there from the ONNX, an fp16 one for fp16, with the ``timing_cache`` file where one is given). A shipped
    ``model.engine`` (``shipped_file``) stays as it is.
    Made once, it is timed many times without exporting again (``compress.timing.latency_against_unpruned``)."""
    if isinstance(model, Path) and model.suffix == ".engine" or not isinstance(model, Path) and backend.startswith("torch"):
        return model  # an engine runs as it is; a torch backend runs the module
    from export import onnx as onnx_export

    scratch.mkdir(parents=True, exist_ok=True)
    if not isinstance(model, Path):  # TensorRT builds the precision the file holds (export/tensorrt.py)
        fp16 = backend == "tensorrt" and precision == "fp16"
        model = onnx_export.export_onnx(model, input_size, scratch / "model.onnx", fp16=fp16)
    if backend.startswith("ort"):
        return model
    from export.tensorrt import build_engine, deployment_profile

    smallest, optimum, largest = deployment_profile(batch_size)
    return build_engine(model, scratch / "model.engine", input_size, min_batch=smallest, opt_batch=optimum, max_batch=largest,
                        timing_cache=timing_cache)


def _prepare(model, backend, batch_size, precision, input_size, threads, cuda_graph, memory_format, scratch,
             timing_cache=None):
    """(step, clock) that runs ``model`` (see ``deployable``) once on ``backend``."""
    model = deployable(model, backend, batch_size, precision, input_size, scratch, timing_cache)
    if isinstance(model, Path) and model.suffix == ".engine":
        from export.tensorrt import EngineRunner

        return EngineRunner(model, batch_size, input_size).run, _cpu_clock
    if backend.startswith("torch"):
        return _torch_step(model, backend, batch_size, precision, input_size, cuda_graph, memory_format)
    return _ort_step(model, backend, batch_size, precision, input_size, threads)


@contextlib.contextmanager
def torch_cuda_flags(enabled):
    """While ``enabled``: cudnn.benchmark on and TF32 off (PyTorch enables it for cuDNN convolutions by default, and an
    fp32 row must be fp32, as on the other backends); then the caller's settings back."""
    flags = [(torch.backends.cudnn, "benchmark", True), (torch.backends.cudnn, "allow_tf32", False),
             (torch.backends.cuda.matmul, "allow_tf32", False)]
    caller_settings = [getattr(owner, name) for owner, name, _ in flags]
    if enabled:
        for owner, name, value in flags:
            setattr(owner, name, value)
    try:
        yield
    finally:
        for (owner, name, _), value in zip(flags, caller_settings):
            setattr(owner, name, value)


@contextlib.contextmanager
def torch_threads(threads):
    """Run on ``threads`` intra-op threads, then give the caller its own setting back."""
    caller_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(caller_threads)


def require_same_settings(rows):
    """Refuse to put side by side rows measured under different settings."""
    seen = {}
    for row in rows:
        group = (row["backend"], row["batch_size"])
        fingerprint = tuple(str(row.get(k)) for k in SETTING_KEYS)
        if seen.setdefault(group, fingerprint) != fingerprint:
            differing = [k for k, a, b in zip(SETTING_KEYS, seen[group], fingerprint) if a != b]
            raise UserError(f"rows for {group[0]} at batch {group[1]} were measured with different {', '.join(differing)}; "
                            "re-measure them together with the same flags")
    return rows
