import gc
import json
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

from bench import latency
from compress.errors import UserError

from bench.__main__ import main as bench_main
from conftest import SMALL_INPUT, TEACHER, main_in_process, small_model


@pytest.mark.parametrize("backend", ["torch-cpu", "ort-cpu"])
def test_cpu_backends_give_sane_statistics(backend):
    result = latency.measure(small_model("mobilenet_v3_small"), backend, 4, "fp32", SMALL_INPUT, min_iters=10,
                             min_seconds=0.2, warmup_seconds=0.1, threads=1)
    assert result["iterations"] >= 10 and 0 < result["median_ms"] <= result["p90_ms"] <= result["p99_ms"]
    assert result["cv"] == pytest.approx(result["std_ms"] / result["mean_ms"]) and result["mean_ms"] > 0
    assert result["throughput_img_s"] == pytest.approx(4000 / result["median_ms"])
    assert result["threads"] == 1 and result["backend"] == backend


def test_ort_cpu_runs_on_the_threads_it_records(monkeypatch, tmp_path):
    """The row says threads = 2: the session it timed ran 2 intra-op threads and one inter-op thread, not ORT's default
    of every core."""
    from export import parity
    from export.onnx import export_onnx

    sessions, make_session = [], parity.ort_session

    def recorded_session(*args, **options):
        sessions.append(make_session(*args, **options))
        return sessions[-1]

    monkeypatch.setattr(parity, "ort_session", recorded_session)
    onnx_path = export_onnx(small_model("mobilenet_v3_small"), SMALL_INPUT, tmp_path / "model.onnx")
    result = latency.measure(onnx_path, "ort-cpu", 2, "fp32", SMALL_INPUT, min_iters=2, min_seconds=0.0,
                             warmup_seconds=0.0, threads=2)
    options = sessions[0].get_session_options()
    assert result["threads"] == 2 and (options.intra_op_num_threads, options.inter_op_num_threads) == (2, 1)


def test_back_to_back_rounds_interleave_and_take_the_median_round(monkeypatch):
    """The models take turns every iteration (A B A B), so drift falls on both; one disturbed round (A's 5 ms) does
    not move A's median."""
    order, times = [], {"A": [1.0, 1.0, 5.0, 5.0, 2.0, 2.0], "B": [3.0] * 6}

    def prepare(name, *settings):
        step = lambda: order.append(name)
        return step, lambda step: (step(), times[name].pop(0))[1]

    monkeypatch.setattr(latency, "_prepare", prepare)
    rounds = latency.measure_rounds(["A", "B"], "torch-cpu", 2, "fp32", SMALL_INPUT, rounds=3, min_iters=2,
                                    min_seconds=0.0, warmup_seconds=0.0, threads=1)
    assert "".join(order) == "ABABAB" * 3 and [len(r) for r in rounds] == [3, 3]  # each round: one untimed call, two timed
    a, b = map(latency.median_over_rounds, rounds)
    assert a["round_medians_ms"] == [1.0, 5.0, 2.0] and a["median_ms"] == 2.0 and a["iterations"] == 6
    assert b["median_ms"] == 3.0 and a["backend"] == b["backend"] == "torch-cpu" and a["threads"] == 1


def test_allocation_times_networks_in_turns_with_the_unpruned_one(monkeypatch, tmp_path):
    """The machine runs at 1.5x its speed for the first turn of a measurement (this VM switches speeds within
    seconds): timed in turns, every network sees the burst, and the pruned ones are still half and a quarter of the
    unpruned one, 12 and 6 ms against the run's 24. The measurement is cached under its key and the unpruned network
    made once, and not at all when every timing is in the cache."""
    from compress import timing

    unpruned, half, quarter = small_model("mobilenet_v2"), small_model("mobilenet_v2"), small_model("mobilenet_v2")
    names = {id(unpruned): ("u", 20.0), id(half): ("h", 10.0), id(quarter): ("q", 5.0)}
    calls, prepared = [], []

    def prepare(model, *settings):
        name, ms = names[id(model)]
        prepared.append(name)
        return lambda: None, lambda step: calls.append(name) or ms * (1.5 if len(calls) <= 3 else 1.0)

    monkeypatch.setattr(latency, "_prepare", prepare)
    config = {"backend": "torch-cpu", "batch_size": 8, "precision": "fp32", "threads": 1, "bench_iters": 4,
              "bench_seconds": 0, "bench_warmup": 0, "out": str(tmp_path)}
    with timing.latency_against_unpruned(config, unpruned, SMALL_INPUT, 24.0, tmp_path / "latency_cache.json") as measure:
        assert measure(lambda: [half, quarter], key="half, quarter") == pytest.approx([12.0, 6.0])
        # cached: read back without building the networks again
        assert measure(lambda: pytest.fail("built again"), key="half, quarter") == pytest.approx([12.0, 6.0])
        assert prepared == ["u", "h", "q"]
    assert "".join(calls) == "uhq" * 4
    assert "in turns with the unpruned network" in (tmp_path / "latency_cache.json").read_text()
    # Resumed with every timing cached: the unpruned network is not even made deployable (an export, a TensorRT build).
    monkeypatch.setattr(latency, "deployable", lambda *args: pytest.fail("made deployable for a cached measurement"))
    with timing.latency_against_unpruned(config, unpruned, SMALL_INPUT, 24.0, tmp_path / "latency_cache.json") as measure:
        assert measure(lambda: pytest.fail("built again"), key="half, quarter") == pytest.approx([12.0, 6.0])


def test_statistics_of_known_samples():
    stats = latency.statistics_ms([float(ms) for ms in range(1, 11)], batch_size=4)  # 1..10 ms
    assert stats["median_ms"] == 5.5 and stats["p90_ms"] == pytest.approx(9.1) and stats["p99_ms"] == pytest.approx(9.91)
    assert stats["mean_ms"] == 5.5 and stats["std_ms"] == pytest.approx(2.8723, abs=1e-4)
    assert stats["cv"] == pytest.approx(2.8723 / 5.5, abs=1e-4) and stats["throughput_img_s"] == pytest.approx(4 / 5.5 * 1000)


def test_median_over_an_even_number_of_rounds_keeps_throughput_consistent_with_the_median():
    rounds = [{"batch_size": 4, **latency.statistics_ms([ms] * 3, 4)} for ms in (1.0, 3.0)]
    combined = latency.median_over_rounds(rounds)
    assert combined["median_ms"] == 2.0 and combined["throughput_img_s"] == pytest.approx(2000.0)  # not the 2667 of a median
    assert combined["round_medians_ms"] == [1.0, 3.0] and combined["iterations"] == 6


def test_models_of_different_input_sizes_are_refused_before_any_timing(tmp_path):
    from compress import graph

    graph.save_checkpoint(tmp_path / "small.pt", small_model("mobilenet_v2"), graph.make_arch("mobilenet_v2", 10, 1, "small", SMALL_INPUT))
    result = subprocess.run([sys.executable, "-m", "bench", str(tmp_path / "small.pt"), "resnet18", "--backend", "ort-cpu"],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "different input sizes (1x28x28, 3x224x224)" in result.stderr
    assert "median" not in result.stdout  # refused before anything was timed


@pytest.mark.parametrize("backend", ["torch-cpu", "ort-cpu"])
def test_timing_leaves_the_callers_model_and_threads_alone(backend):
    """The pipeline times a model and then keeps using it: its dtype, device and thread count must survive."""
    model = small_model("mobilenet_v2").double()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    threads = torch.get_num_threads()
    latency.measure(model, backend, 2, "fp32", SMALL_INPUT, min_iters=3, min_seconds=0.0, warmup_seconds=0.0, threads=threads + 1)
    assert torch.get_num_threads() == threads
    after = model.state_dict()
    assert all(after[k].dtype == v.dtype and torch.equal(after[k], v) for k, v in before.items())


def test_backend_checks():
    with pytest.raises(UserError, match="unknown backend 'tpu'"):
        latency.check_backend("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="no CUDA GPU"):
            latency.check_backend("torch-cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="torch-cuda timing needs a CUDA GPU")
def test_torch_cuda_graph_replay():
    result = latency.measure(small_model("mobilenet_v2"), "torch-cuda", 8, "fp16", SMALL_INPUT, min_iters=20, min_seconds=0.2)
    assert result["cuda_graph"] and result["median_ms"] > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="torch-cuda timing needs a CUDA GPU")
def test_a_captured_graph_keeps_the_weights_and_input_it_reads():
    """A graph replays at the addresses it was captured with: had the step let its model copy and input go, memory
    taken after it (here NaNs of the same sizes) would feed the replay."""
    model = small_model("mobilenet_v2")
    torch.manual_seed(0)
    graphed, _ = latency._torch_step(model, "torch-cuda", 4, "fp32", SMALL_INPUT, True, "channels_last")
    gc.collect()
    squatters = [torch.full_like(t, float("nan"), device="cuda") for t in model.state_dict().values() if t.is_floating_point()]
    squatters.append(torch.full((4, *SMALL_INPUT), float("nan"), device="cuda"))
    torch.manual_seed(0)  # the same input as the graphed step's
    eager, _ = latency._torch_step(model, "torch-cuda", 4, "fp32", SMALL_INPUT, False, "channels_last")
    with torch.inference_mode():
        expected = eager()
        replayed = graphed()
    torch.cuda.synchronize()
    assert torch.isfinite(replayed).all() and torch.allclose(replayed, expected, rtol=1e-2, atol=1e-2)


def test_rows_with_different_settings_are_refused():
    row = {"backend": "ort-cpu", "batch_size": 1, "precision": "fp32", "input_size": "1x28x28", "threads": 2, "cuda_graph": None}
    latency.require_same_settings([row, dict(row)])
    with pytest.raises(UserError, match="threads"):
        latency.require_same_settings([row, dict(row, threads=4)])


def test_cli_table(tmp_path):
    out = tmp_path / "report"
    subprocess.run([sys.executable, "-m", "bench", "mobilenet_v2", "mobilenet_v3_small", "--backend", "ort-cpu", "--batch-size", "1,2",
                    "--input-size", "1x28x28", "--min-iters", "5", "--min-seconds", "0.1", "--warmup-seconds", "0.05",
                    "--num-classes", "10", "--repeat", "2", "--out", str(out)], check=True, capture_output=True)
    import pandas as pd

    table = pd.read_csv(out / "bench.csv")
    runs = pd.DataFrame(json.loads((out / "bench.json").read_text())["rows"])
    assert len(table) == 4 and (table["median_ms"] > 0).all() and (table["repeat_spread"] >= 0).all()
    assert len(runs) == 8 and sorted(runs["run"].unique()) == [0, 1]
    assert (table[table["model"] == "mobilenet_v2"]["speedup_vs_first"] == 1.0).all()
    assert (out / "latency_vs_macs.png").stat().st_size > 0 and "command" in (out / "bench.md").read_text()


def test_the_report_names_the_processor_each_backend_ran_on(monkeypatch, capsys, tmp_path):
    """On a machine with a GPU, an ort-cpu table said "device: <the GPU>": the report names the CPU for CPU backends."""
    environment = latency.environment
    monkeypatch.setattr(latency, "environment", lambda: {**environment(), "gpu": "NVIDIA Stand-in"})
    result = main_in_process(bench_main, capsys, "mobilenet_v3_small", "--backend", "ort-cpu", "--batch-size", "1",
                             "--input-size", "1x28x28", "--num-classes", "10", "--min-iters", "2", "--min-seconds", "0",
                             "--warmup-seconds", "0", "--out", str(tmp_path))
    device = next(line for line in (tmp_path / "bench.md").read_text().splitlines() if line.startswith("- device:"))
    assert result.returncode == 0 and device.startswith(f"- device: ort-cpu on {latency.cpu_name()}; ")


@pytest.mark.parametrize("args,message", [(["nonsense_model"], "not a zoo model"), (["resnet18", "--backend", "tpu"], "unknown backend"),
                                          (["resnet18", "--repeat", "0"], "argument --repeat: 0 must be at least 1"),
                                          (["resnet18", "--batch-size", "1,x"], "argument --batch-size: invalid positive_int_list value: '1,x'"),
                                          (["resnet18", "--batch-size", "8,0"], "argument --batch-size: 0 must be at least 1"),
                                          (["resnet18", "--input-size", "2x"], "argument --input-size: invalid image_size value: '2x'"),
                                          (["resnet18", "--input-size", "3x32"], "'3x32' is neither a side"),
                                          ([TEACHER, "--input-size", "1x5000x5000"], "a side above 2048 px is no classification"),
                                          (["resnet18", "--threads", "-1"], "argument --threads: -1 must be at least 1"),
                                          (["resnet18", "--min-seconds", "inf"], "inf must be a finite number"),
                                          (["resnet18", "--warmup-seconds", "nan"], "nan must be a finite number"),
                                          (["resnet18", "--backend", "torch-cpu", "--memory-format", "nhwc"], "invalid choice: 'nhwc'"),
                                          (["resnet18", "--backend", ","], "argument --backend: ',' names nothing"),
                                          (["resnet18", "--out", __file__], "is a file; give a folder"),
                                          ([TEACHER, "--input-size", "224"], "takes 1-channel images, not --input-size 3x224x224"),
                                          (["resnet18", "--batch-size", "8,8"], "--batch-size names 8 twice; give each once"),
                                          (["resnet18", "resnet18"], "models names resnet18 twice"),
                                          ([TEACHER, os.path.relpath(TEACHER)], f"models names {TEACHER} twice"),  # one file
                                          (["resnet18", "--backend", "ort-cpu,ort-cpu"], "--backend names ort-cpu twice"),
                                          (["mobilenet_v3_small", "--input-size", "1x28x28", "--backend", "torch-cpu",
                                            "--batch-size", "100000000"], "does not fit in torch-cpu's memory"),
                                          (["mobilenet_v3_small", "--input-size", "1x28x28", "--backend", "ort-cpu",
                                            "--batch-size", "100000000"], "does not fit in ort-cpu's memory")])
def test_cli_bad_input(args, message, capsys):
    result = main_in_process(bench_main, capsys, *args)
    assert result.returncode == 2 and message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_bench_never_writes_over_a_runs_final_bench(tmp_path, capsys):
    """A run's bench.csv is its final bench, which its report and --resume read: refused before any timing."""
    (tmp_path / "config.yaml").write_text("command: python -m compress --target-latency 0.5x\n")
    result = main_in_process(bench_main, capsys, "resnet18", "--out", str(tmp_path))
    assert result.returncode == 2 and "is a run directory of python -m compress" in result.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == ["config.yaml"]


def test_the_first_call_runs_before_the_warm_up_clock_starts(monkeypatch):
    """A slow first call (autotuning, an engine build inside ONNX Runtime) used to spend the whole warm-up. On a simulated
    clock (seconds in powers of two, exact in floating point): on a loaded machine a real one can stall a no-op too."""
    now, calls = [0.0], []

    def step():
        calls.append(None)
        now[0] += 0.5 if len(calls) == 1 else 0.125

    def clock(step):
        started = now[0]
        step()
        return (now[0] - started) * 1e3

    monkeypatch.setattr(latency, "time", SimpleNamespace(perf_counter=lambda: now[0]))
    samples, = latency._time_interleaved([(step, clock)], min_iters=3, min_seconds=0.0, warmup_seconds=0.5)
    assert len(calls) == 1 + 4 + 3 and samples == [125.0] * 3  # the first call, 0.5 s of warm-up, the timed three


def test_fp32_means_fp32_on_every_backend():
    """torch-cuda runs with TF32 off while it is timed, as the ONNX Runtime CUDA route and TensorRT's fp32 engines do,
    and the caller's flags come back; settings that a backend ignores are not recorded as if they applied."""
    before = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.benchmark)
    with latency.torch_cuda_flags(True):
        assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
        assert torch.backends.cudnn.benchmark
    assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.benchmark) == before
    assert latency.settings("ort-cpu", 1, "fp32", (1, 28, 28), memory_format="channels_last")["memory_format"] is None
    with pytest.raises(UserError, match="ort-cuda measures fp32 only"):
        latency.check_precision("ort-cuda", "fp16")


@pytest.mark.parametrize("backend, device", [("ort-cpu", "cpu"), ("ort-cuda", "cuda"), ("ort-trt", "cuda")])
def test_onnx_runtime_is_timed_without_host_copies(backend, device, monkeypatch, tmp_path):
    """The batch and the outputs stay on the provider's device, as they do for torch-cuda and TensorRT: session.run()
    copied the batch to the GPU and the logits back inside every timed call. Off a GPU the CUDA routes run on the CPU
    provider here, recording the device each value was bound to."""
    import onnxruntime

    from export import parity
    from export.onnx import export_onnx

    bound = []
    on_cpu = onnxruntime.OrtValue.ortvalue_from_numpy
    monkeypatch.setattr(onnxruntime.OrtValue, "ortvalue_from_numpy",
                        lambda array, device_type, device_id: bound.append(("input", device_type)) or on_cpu(array, "cpu", 0))
    bind_output = onnxruntime.IOBinding.bind_output
    monkeypatch.setattr(onnxruntime.IOBinding, "bind_output", lambda binding, name, device_type, device_id:
                        bound.append(("output", device_type)) or bind_output(binding, name, "cpu", 0))
    monkeypatch.setattr(parity, "ort_session", lambda path, *args, **options: onnxruntime.InferenceSession(str(path)))
    monkeypatch.setattr(onnxruntime.InferenceSession, "run", lambda *args: pytest.fail("session.run() copies through the host"))
    onnx_path = export_onnx(small_model("mobilenet_v3_small"), SMALL_INPUT, tmp_path / "model.onnx")
    step, clock = latency._ort_step(onnx_path, backend, 2, "fp32", SMALL_INPUT, threads=1)
    step()
    assert bound == [("input", device), ("output", device)] and clock is latency._cpu_clock


def test_tensorrt_is_timed_on_an_engine_built_as_the_shipped_one(monkeypatch, tmp_path):
    """The bench built a min = opt = max engine while python -m compress ships one with the profile 1 / batch / 64, and
    TensorRT picks kernels per profile: the final bench timed an engine nobody deploys. TensorRT is absent here, so its
    two entry points record what they are asked for."""
    import onnx

    from compress import pipeline
    from export import cli as export_cli, onnx as onnx_files, tensorrt

    profiles = {}

    def build_engine(onnx_path, engine_path, input_size, *, min_batch, opt_batch, max_batch, timing_cache=None):
        profiles["timed"] = (min_batch, opt_batch, max_batch)
        profiles["onnx"] = onnx_path
        return engine_path

    monkeypatch.setattr(tensorrt, "build_engine", build_engine)
    monkeypatch.setattr(tensorrt, "EngineRunner", lambda *args: type("Runner", (), {"run": None})())
    latency._prepare(small_model("mobilenet_v3_small"), "tensorrt", 16, "fp16", SMALL_INPUT, 1, True, None, tmp_path / "scratch")
    assert onnx_files.precision(onnx.load(profiles["onnx"])) == "fp16"  # TensorRT builds the file's precision
    monkeypatch.setattr(export_cli, "run", lambda out, **options: profiles.setdefault(
        "shipped", (options["min_batch"], options["opt_batch"], options["max_batch"])))
    pipeline.export({"backend": "tensorrt", "precision": "fp16", "batch_size": 16}, tmp_path)
    assert profiles["timed"] == profiles["shipped"] == (1, 16, 64)
    # An ONNX file given to the bench is built as it is, with the same profile.
    onnx_file = tmp_path / "scratch" / "model.onnx"
    latency._prepare(onnx_file, "tensorrt", 8, "fp16", SMALL_INPUT, 1, True, None, tmp_path / "scratch_onnx")
    assert profiles["onnx"] == onnx_file and profiles["timed"] == (1, 8, 64)


def test_tensorrt_builds_of_a_run_share_its_timing_cache(monkeypatch, tmp_path):
    """A latency run on TensorRT builds an engine for the baseline, every probe and the export: each build without a
    timing cache times every layer's kernels again. The run's builds share the run directory's timing.cache, which a
    new target keeps; the bench's builds share one for the call. TensorRT is absent here, so the builds are recorded."""
    from compress import pipeline, timing
    from export import tensorrt

    caches = []

    def build_engine(onnx_path, engine_path, input_size, *, min_batch, opt_batch, max_batch, timing_cache=None):
        caches.append(timing_cache)
        return engine_path

    monkeypatch.setattr(latency, "check_backend", lambda backend: backend)
    monkeypatch.setattr(tensorrt, "build_engine", build_engine)
    monkeypatch.setattr(tensorrt, "EngineRunner", lambda *args: type("Runner", (), {"run": lambda self: None})())
    config = {"backend": "tensorrt", "batch_size": 8, "precision": "fp16", "threads": 1, "bench_iters": 2,
              "bench_seconds": 0, "bench_warmup": 0, "bench_rounds": 1, "out": str(tmp_path)}
    model, pruned = small_model("mobilenet_v3_small"), small_model("mobilenet_v3_small")
    timing.time_model(config, model, SMALL_INPUT, tmp_path / "latency_cache.json", "full")
    with timing.latency_against_unpruned(config, model, SMALL_INPUT, 10.0, tmp_path / "latency_cache.json") as measure:
        measure(lambda: [pruned], key="pruned")
    assert caches == [tmp_path / "timing.cache"] * 3
    assert "timing.cache" in pipeline.TARGET_FREE
    caches.clear()
    latency.measure_rounds([model, pruned], "tensorrt", 8, "fp16", SMALL_INPUT, rounds=1, min_iters=2, min_seconds=0,
                           warmup_seconds=0)
    assert len(caches) == 2 and caches[0] is not None and caches[0] == caches[1]


def exported_run(tmp_path):
    """A run directory as python -m export leaves it: model.pt, model.onnx and export.json (parity on synthetic input)."""
    from compress import graph
    from export import cli as export_cli

    run_dir = tmp_path / "run"
    graph.save_checkpoint(run_dir / "model.pt", small_model("mobilenet_v3_small"),
                          graph.make_arch("mobilenet_v3_small", 10, 1, "small", SMALL_INPUT))
    export_cli.run(run_dir, samples=4)
    return run_dir


def test_a_run_directory_is_timed_as_it_ships(monkeypatch, tmp_path, capsys):
    """ONNX Runtime times the run's own model.onnx, not a new export of model.pt; a checkpoint, a run whose parity check
    failed, files exported from another checkpoint, or another input size are exported for the measurement, and the
    table says which was timed."""
    run_dir = exported_run(tmp_path)
    timed = []
    ort_step = latency._ort_step
    monkeypatch.setattr(latency, "_ort_step", lambda onnx_path, *args: timed.append(onnx_path) or ort_step(onnx_path, *args))
    quick = ["--backend", "ort-cpu", "--min-iters", "2", "--min-seconds", "0", "--warmup-seconds", "0"]
    summary = bench_main([str(run_dir), str(run_dir / "model.pt"), *quick])
    assert timed[0] == run_dir / "model.onnx" and timed[1] != run_dir / "model.onnx"
    assert list(summary["timed"]) == ["model.onnx", "exported for the bench"]
    summary = bench_main([str(run_dir), *quick, "--input-size", "1x32x32"])  # the shipped file takes 28 px only
    assert timed[2] != run_dir / "model.onnx" and list(summary["timed"]) == ["exported for the bench"]
    checks = json.loads((run_dir / "export.json").read_text())
    (run_dir / "export.json").write_text(json.dumps({**checks, "parity_fp32": {**checks["parity_fp32"], "passed": False}}))
    assert latency.shipped_file(run_dir, "ort-cpu", "fp32", 8) is None
    (run_dir / "export.json").write_text(json.dumps({**checks, "checkpoint_sha256": "another model.pt"}))
    assert latency.shipped_file(run_dir, "ort-cpu", "fp32", 8) is None
    for record in ("{half written", "[]", json.dumps({**checks, "parity_fp32": {}})):  # not an export's: nothing shipped
        (run_dir / "export.json").write_text(record)
        assert latency.shipped_file(run_dir, "ort-cpu", "fp32", 8) is None


def test_a_folder_exported_for_another_checkpoint_is_timed_as_it_ships(monkeypatch, tmp_path, capsys):
    """python -m export runs/x/ft5.pt writes runs/x/ft5_export/ (no model.pt in it); the bench times that folder's
    model.onnx for ft5.pt, as the engine refusal's "pass its run directory" asks, and a retrained ft5.pt is
    exported afresh. Exporting the folder again re-exports ft5.pt into it."""
    from compress import graph
    from export import cli as export_cli

    run_dir = exported_run(tmp_path)
    torch.manual_seed(1)
    graph.save_checkpoint(run_dir / "ft5.pt", small_model("mobilenet_v3_small"), graph.load_checkpoint(run_dir / "model.pt")[1])
    export_cli.run(run_dir / "ft5.pt", samples=4)
    folder = run_dir / "ft5_export"
    assert not (folder / "model.pt").exists() and json.loads((folder / "export.json").read_text())["checkpoint"] == "../ft5.pt"
    timed = []
    ort_step = latency._ort_step
    monkeypatch.setattr(latency, "_ort_step", lambda onnx_path, *args: timed.append(onnx_path) or ort_step(onnx_path, *args))
    quick = ["--backend", "ort-cpu", "--min-iters", "2", "--min-seconds", "0", "--warmup-seconds", "0"]
    summary = bench_main([str(folder), *quick])
    assert timed == [folder / "model.onnx"] and list(summary["timed"]) == ["model.onnx"]
    assert summary["macs"].iloc[0] == bench_main([str(run_dir / "ft5.pt"), *quick])["macs"].iloc[0]
    assert export_cli.locate(folder) == (folder, folder / "../ft5.pt")
    graph.save_checkpoint(run_dir / "ft5.pt", small_model("mobilenet_v3_small"), graph.load_checkpoint(run_dir / "model.pt")[1])
    assert latency.shipped_file(folder, "ort-cpu", "fp32", 8) is None  # ft5.pt changed since: not what the folder holds
    (tmp_path / "empty").mkdir()
    result = main_in_process(bench_main, capsys, str(tmp_path / "empty"), *quick)
    assert result.returncode == 2 and "without model.pt or an export of a checkpoint" in result.stderr


def test_an_onnx_file_is_timed_as_it_is(tmp_path, capsys):
    """An ONNX file from anywhere (here torch.onnx's own, batch and image size fixed): ONNX Runtime times the file, its
    MACs counted from its graph; what it cannot run as asked, or at all, is one line before any timing."""
    import onnx

    from compress import macs

    model = small_model("mobilenet_v3_small")
    onnx_path = tmp_path / "fixed.onnx"
    torch.onnx.export(model.eval(), (torch.randn(2, *SMALL_INPUT),), str(onnx_path), dynamo=False, opset_version=17)
    quick = ["--backend", "ort-cpu", "--min-iters", "2", "--min-seconds", "0", "--warmup-seconds", "0"]
    summary = bench_main([str(onnx_path), "--batch-size", "2", *quick])
    assert list(summary["timed"]) == ["fixed.onnx"] and summary["macs"][0] == macs.count_macs_params(model, SMALL_INPUT)[0]
    capsys.readouterr()

    def refusal(*paths_and_flags):
        result = main_in_process(bench_main, capsys, *quick, *map(str, paths_and_flags))
        assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "median" not in result.stdout  # no row was timed first
        return result.stderr

    assert "has a fixed batch of 2; pass --batch-size 2" in refusal(onnx_path, "--batch-size", "8")
    assert "takes images of 1x28x28, not --input-size 1x32x32" in refusal(onnx_path, "--batch-size", "2", "--input-size", "1x32x32")
    assert "is an ONNX file, which torch-cpu cannot run" in refusal(onnx_path, "--batch-size", "2", "--backend", "torch-cpu")
    from bench.__main__ import onnx_file  # TensorRT is absent here, so the command would stop at that first

    with pytest.raises(UserError, match="holds fp32 weights and TensorRT builds the precision a file holds; pass --precision fp32"):
        onnx_file(onnx_path, None, ["tensorrt"], [2], "fp16")
    free = onnx.load(onnx_path)
    for dim in free.graph.input[0].type.tensor_type.shape.dim:
        dim.dim_param = "free"
    onnx.save(free, tmp_path / "free.onnx")
    assert "leaves its image size free (?x?x?); pass --input-size" in refusal(tmp_path / "free.onnx")
    (tmp_path / "model.engine").write_bytes(b"serialised engine")
    (tmp_path / "notes.onnx").write_text("not a model")
    assert "is a TensorRT engine" in refusal(tmp_path / "model.engine")
    assert "is not an ONNX model" in refusal(tmp_path / "notes.onnx")
    custom = onnx.helper.make_graph([onnx.helper.make_node("Frobnicate", ["images"], ["logits"], domain="com.example")], "g",
                                    [onnx.helper.make_tensor_value_info("images", onnx.TensorProto.FLOAT, ["n", *SMALL_INPUT])],
                                    [onnx.helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, ["n", 10])])
    onnx.save(onnx.helper.make_model(custom, ir_version=8, opset_imports=[onnx.helper.make_opsetid("", 17),
                                                                         onnx.helper.make_opsetid("com.example", 1)]),
              tmp_path / "custom.onnx")
    assert "cannot load" in refusal(tmp_path / "custom.onnx")  # an operator ONNX Runtime does not know
    assert "cannot load" in refusal(onnx_path, tmp_path / "custom.onnx", "--batch-size", "2")  # nor after a good one


def test_a_shipped_engine_of_another_precision_or_profile_is_refused(tmp_path):
    """TensorRT times the run's model.engine as built; export.json says for which precision and batch profile, and the
    refusal says how to rebuild it for the settings asked (TensorRT is absent here, and nothing loads the engine before
    these checks)."""
    run_dir = exported_run(tmp_path)
    (run_dir / "model.engine").write_bytes(b"serialised engine")
    checks = json.loads((run_dir / "export.json").read_text())
    assert latency.shipped_file(run_dir, "tensorrt", "fp16", 8) is None  # an engine this export did not build
    (run_dir / "export.json").write_text(json.dumps({**checks, "engine_fp16": True, "engine_profile": [1, 8, 64]}))
    assert latency.shipped_file(run_dir, "tensorrt", "fp16", 64) == run_dir / "model.engine"
    assert latency.timed_as(run_dir / "model.engine", "tensorrt") == "model.engine (profile 1/8/64)"
    with pytest.raises(UserError, match="was built for fp16; pass --precision fp16, or rebuild it: python -m export .* "
                                        "--tensorrt --min-batch 1 --opt-batch 8 --max-batch 64"):
        latency.shipped_file(run_dir, "tensorrt", "fp32", 8)
    with pytest.raises(UserError, match=r"batch size 128 is outside the engine profile \[1, 64\]; pass a batch in it, or "
                                        r"rebuild it: python -m export .* --tensorrt --fp16 --min-batch 1 --opt-batch 128 "
                                        r"--max-batch 128"):
        latency.shipped_file(run_dir, "tensorrt", "fp16", 128)


def test_a_run_times_again_what_another_protocol_timed(monkeypatch, tmp_path):
    """A resumed run's latency cache from before ONNX Runtime's IOBinding (host copies timed on its GPU routes) is not
    mixed with this protocol's timings: the settings in its keys carry the protocol."""
    from compress import timing

    config = {"backend": "ort-cpu", "batch_size": 8, "precision": "fp32", "threads": 1, "bench_iters": 2, "bench_seconds": 0,
              "bench_warmup": 0, "bench_rounds": 3, "out": str(tmp_path)}
    before = {k: v for k, v in latency.settings("ort-cpu", 8, "fp32", SMALL_INPUT, 1).items() if k != "protocol"}
    cache = tmp_path / "latency_cache.json"
    cache.write_text(json.dumps({json.dumps([before, "full"], sort_keys=True): {"median_ms": 99.0}}))
    monkeypatch.setattr(latency, "measure_rounds", lambda models, *args, rounds, **options: [
        [{"batch_size": 8, **latency.statistics_ms([ms], 8)} for ms in (3.0, 1.0, 1.5)[:rounds]]])
    timing = timing.time_model(config, None, SMALL_INPUT, cache, "full")
    assert timing["median_ms"] == 1.5 and timing["round_medians_ms"] == [3.0, 1.0, 1.5]  # the baseline's median round
