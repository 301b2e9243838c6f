import json
import re
import subprocess
import sys

import onnx
import pytest
import torch

from compress import graph, macs, zoo
from compress.errors import UserError
from export import parity
from export.cli import main as export_main
from export.onnx import count_macs_params, export_onnx, precision

from conftest import SMALL_INPUT, TEACHER, main_in_process, random_keep, small_model


@pytest.mark.parametrize("name", zoo.MODEL_NAMES)
@pytest.mark.parametrize("pruned", [False, True])
def test_onnx_parity(name, pruned, tmp_path):
    model = small_model(name)
    if pruned:
        graph.prune(model, SMALL_INPUT, random_keep(model))
    for module in model.modules():  # non-trivial BN statistics, so folding is really exercised
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    path = export_onnx(model, SMALL_INPUT, tmp_path / "model.onnx")
    exported = onnx.load(path)
    assert exported.opset_import[0].version >= 17
    assert not any(node.op_type == "BatchNormalization" for node in exported.graph.node)
    assert exported.graph.input[0].name == "images" and exported.graph.output[0].name == "logits"
    assert exported.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert precision(exported) == "fp32"
    images = torch.randn(5, *SMALL_INPUT)  # a batch size not used at export: the batch is dynamic
    check = parity.compare(parity.torch_logits(model, images), parity.ort_logits(path, images))
    assert check["rel_diff"] < 1e-4 and check["top1_agreement"] == 1.0
    # python -m bench counts an ONNX file's MACs from its graph: the network's count, pruned widths and all.
    assert count_macs_params(exported, SMALL_INPUT)[0] == macs.count_macs_params(model, SMALL_INPUT)[0]


def test_an_export_draws_nothing_from_the_global_rng(tmp_path):
    """Evaluation on the CPU exports the network: a draw there would change the shuffle order of a fine-tune after it."""
    model = small_model("resnet18")
    torch.manual_seed(0)
    expected = torch.rand(1)
    torch.manual_seed(0)
    export_onnx(model, SMALL_INPUT, tmp_path / "model.onnx")
    assert torch.equal(torch.rand(1), expected)


@pytest.mark.parametrize("name", zoo.MODEL_NAMES)
def test_an_fp16_export_holds_its_precision_between_fp32_input_and_output(name, tmp_path):
    """TensorRT 11 builds the precision a file holds (strongly typed networks; the FP16 builder flag is gone), so an
    fp16 engine is built from an fp16 file, which still takes and returns fp32 like model.onnx."""
    model = small_model(name)
    graph.prune(model, SMALL_INPUT, random_keep(model))
    path = export_onnx(model, SMALL_INPUT, tmp_path / "model_fp16.onnx", fp16=True)
    exported = onnx.load(path)
    assert precision(exported) == "fp16"
    assert [value.type.tensor_type.elem_type for value in (*exported.graph.input, *exported.graph.output)] == \
        [onnx.TensorProto.FLOAT] * 2
    assert not any(node.op_type == "BatchNormalization" for node in exported.graph.node)
    images = torch.randn(5, *SMALL_INPUT)
    assert parity.compare(parity.torch_logits(model, images), parity.ort_logits(path, images))["rel_diff"] < 1e-2


def fake_tensorrt_11(calls):
    """The TensorRT names build_engine calls, recording what it asks for; each name is in the TensorRT 11.4 bindings
    (reports/tensorrt_api/), and the weak-typing flags 11 removed (BuilderFlag.FP16 and the like) are absent, as there."""
    from types import ModuleType, SimpleNamespace

    trt = ModuleType("tensorrt")
    trt.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda self, severity: None})
    trt.NetworkDefinitionCreationFlag = SimpleNamespace(STRONGLY_TYPED=5)
    trt.BuilderFlag = SimpleNamespace(TF32="TF32", DEBUG="DEBUG")

    class Config:
        set_flag = lambda self, flag: calls.setdefault("set", []).append(flag)
        clear_flag = lambda self, flag: calls.setdefault("cleared", []).append(flag)
        create_timing_cache = lambda self, data: SimpleNamespace(data=data)

        def set_timing_cache(self, cache, ignore_mismatch):
            calls["cache_read"] = cache.data
            return True

        get_timing_cache = lambda self: SimpleNamespace(serialize=lambda: b"tuned")
        add_optimization_profile = lambda self, profile: calls.setdefault("profile", profile.shapes)

    class Builder:
        __init__ = lambda self, logger: None
        create_builder_config = lambda self: Config()
        build_serialized_network = lambda self, network, config: b"engine"

        def create_network(self, flags):
            calls["network_flags"] = flags
            return SimpleNamespace(get_input=lambda index: SimpleNamespace(name="images"))

        def create_optimization_profile(self):
            profile = SimpleNamespace(shapes=None)
            profile.set_shape = lambda name, *shapes: setattr(profile, "shapes", (name, *shapes))
            return profile

    class OnnxParser:
        num_errors = 0
        __init__ = lambda self, network, logger: None

        def parse(self, data):
            calls["parsed"] = data
            return True

    trt.Builder, trt.OnnxParser = Builder, OnnxParser
    return trt


def test_an_engine_is_built_strongly_typed_from_the_file_it_is_given(monkeypatch, tmp_path):
    """No weak-typing flag (TensorRT 11 has none; an AttributeError here means one came back): the fp16 file's types
    are the engine's, TF32 stays off for fp32 layers, and the profile and timing cache are the ones asked for."""
    from export import tensorrt as trt_export

    calls = {}
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt_11(calls))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    onnx_path = export_onnx(small_model("mobilenet_v2"), SMALL_INPUT, tmp_path / "model_fp16.onnx", fp16=True)
    (tmp_path / "timing.cache").write_bytes(b"earlier")
    engine = trt_export.build_engine(onnx_path, tmp_path / "model.engine", SMALL_INPUT, min_batch=1, opt_batch=8, max_batch=64,
                                     timing_cache=tmp_path / "timing.cache")
    assert calls["network_flags"] == 1 << 5 and calls["parsed"] == onnx_path.read_bytes()
    assert "set" not in calls and calls["cleared"] == ["TF32"]
    assert calls["profile"] == ("images", (1, *SMALL_INPUT), (8, *SMALL_INPUT), (64, *SMALL_INPUT))
    assert calls["cache_read"] == b"earlier" and (tmp_path / "timing.cache").read_bytes() == b"tuned"
    assert engine.read_bytes() == b"engine"


def test_gpu_routes_of_onnx_runtime_run_fp32_without_tf32(monkeypatch):
    """ONNX Runtime's CUDA provider uses TF32 by default: an fp32 route (parity or bench) would be held to fp32's
    tolerance while running TF32. Every session turns it off, beside what the caller asks of the providers."""
    import onnxruntime

    asked = {}

    class Session:
        def __init__(self, path, options, providers, provider_options):
            asked.update(zip(providers, provider_options))

        def get_providers(self):
            return ["TensorrtExecutionProvider"]

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["TensorrtExecutionProvider", "CUDAExecutionProvider"])
    monkeypatch.setattr(onnxruntime, "InferenceSession", Session)
    parity.ort_session("model.onnx", parity.ORT_PROVIDERS["ort-trt"], {"TensorrtExecutionProvider": {"trt_fp16_enable": True}})
    assert asked == {"TensorrtExecutionProvider": {"trt_fp16_enable": True}, "CUDAExecutionProvider": {"use_tf32": "0"}}


def test_perturbed_weight_is_detected(tmp_path):
    model = small_model("mobilenet_v2")
    path = export_onnx(model, SMALL_INPUT, tmp_path / "model.onnx")
    with torch.no_grad():
        model.features[3].conv[0][0].weight.mul_(1.5)
    images = torch.randn(4, *SMALL_INPUT)
    assert parity.compare(parity.torch_logits(model, images), parity.ort_logits(path, images))["rel_diff"] > 1e-4


def test_cli_writes_onnx_and_report(tmp_path):
    model = small_model("mobilenet_v3_small")
    graph.save_checkpoint(tmp_path / "model.pt", model, graph.make_arch("mobilenet_v3_small", 10, 1, "small", SMALL_INPUT))
    subprocess.run([sys.executable, "-m", "export", str(tmp_path)], check=True)
    report = json.loads((tmp_path / "export.json").read_text())
    assert report["parity_fp32"]["passed"] and (tmp_path / "model.onnx").is_file()


def test_another_checkpoint_exports_beside_the_run_and_leaves_what_it_ships(tmp_path, capsys):
    """runs/x/ft5.pt (python -m compress.train's docstring writes one there) goes to runs/x/ft5_export/: the run's
    model.onnx and export.json still describe its model.pt."""
    arch = graph.make_arch("mobilenet_v3_small", 10, 1, "small", SMALL_INPUT)
    graph.save_checkpoint(tmp_path / "model.pt", small_model("mobilenet_v3_small"), arch)
    assert main_in_process(export_main, capsys, str(tmp_path)).returncode == 0
    shipped = {name: (tmp_path / name).read_bytes() for name in ("model.onnx", "export.json")}
    torch.manual_seed(1)
    graph.save_checkpoint(tmp_path / "ft5.pt", small_model("mobilenet_v3_small"), arch)
    assert main_in_process(export_main, capsys, str(tmp_path / "ft5.pt")).returncode == 0
    assert {name: (tmp_path / name).read_bytes() for name in shipped} == shipped
    report = json.loads((tmp_path / "ft5_export" / "export.json").read_text())
    assert report["parity_fp32"]["passed"] and report["checkpoint_sha256"] != json.loads(shipped["export.json"])["checkpoint_sha256"]
    assert (tmp_path / "ft5_export" / "model.onnx").is_file()


def test_an_interrupted_export_of_a_checkpoint_leaves_no_folder(tmp_path, capsys, monkeypatch):
    """Ctrl-C between model.onnx and export.json left ft5_export/ with no export.json: bench and export refused the
    folder as no export's (exporting ft5.pt again repaired it)."""
    graph.save_checkpoint(tmp_path / "ft5.pt", small_model("mobilenet_v3_small"),
                          graph.make_arch("mobilenet_v3_small", 10, 1, "small", SMALL_INPUT))

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(parity, "ort_logits", interrupted)
    assert main_in_process(export_main, capsys, str(tmp_path / "ft5.pt")).returncode == 130
    assert sorted(path.name for path in tmp_path.iterdir()) == ["ft5.pt"]


def test_parity_runs_on_the_run_s_test_images_or_says_why_not(tmp_path, capsys):
    """A run's config.yaml names its data: parity on its test images. Where that data is gone since the run (export has
    no --data-dir to point at it), on synthetic input, and export.json and a warning say why."""
    graph.save_checkpoint(tmp_path / "model.pt", small_model("mobilenet_v3_small"),
                          graph.make_arch("mobilenet_v3_small", 10, 1, "small", SMALL_INPUT))
    config = {"command": "python -m compress --target-latency 0.5x", "data": "fashion-mnist", "data_dir": None}
    (tmp_path / "config.yaml").write_text(json.dumps(config))  # JSON is YAML
    assert main_in_process(export_main, capsys, str(tmp_path)).returncode == 0
    assert json.loads((tmp_path / "export.json").read_text())["inputs"] == "fashion-mnist test images"
    (tmp_path / "config.yaml").write_text(json.dumps({**config, "data_dir": str(tmp_path / "moved")}))
    result = main_in_process(export_main, capsys, str(tmp_path))
    report = json.loads((tmp_path / "export.json").read_text())
    assert result.returncode == 0 and report["parity_fp32"]["passed"]
    assert report["inputs"].startswith("synthetic input (the run's data cannot be read: data folder")
    assert "warning: parity checked on synthetic input" in result.stderr


def test_fp16_writes_a_checked_fp16_onnx_and_a_later_export_without_it_removes_it(tmp_path, capsys):
    model = small_model("mobilenet_v3_small")
    graph.save_checkpoint(tmp_path / "model.pt", model, graph.make_arch("mobilenet_v3_small", 10, 1, "small", SMALL_INPUT))
    assert main_in_process(export_main, capsys, str(tmp_path), "--fp16").returncode == 0
    report = json.loads((tmp_path / "export.json").read_text())
    assert report["parity_fp16_onnx"]["passed"] and precision(onnx.load(tmp_path / "model_fp16.onnx")) == "fp16"
    assert "engine_fp16" not in report  # no engine without --tensorrt
    if not torch.cuda.is_available():  # --tensorrt refused before anything is replaced
        refused = main_in_process(export_main, capsys, str(tmp_path), "--tensorrt", "--fp16")
        assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1
        assert json.loads((tmp_path / "export.json").read_text()) == report
    assert main_in_process(export_main, capsys, str(tmp_path)).returncode == 0
    assert not (tmp_path / "model_fp16.onnx").exists() and "parity_fp16_onnx" not in json.loads((tmp_path / "export.json").read_text())


def test_cli_parity_failure_exits_1_and_is_recorded(tmp_path, monkeypatch):
    from export import cli as export_cli

    model = small_model("mobilenet_v3_small")
    graph.save_checkpoint(tmp_path / "model.pt", model, graph.make_arch("mobilenet_v3_small", 10, 1, "small", SMALL_INPUT))
    ort_logits = parity.ort_logits
    monkeypatch.setattr(parity, "ort_logits", lambda *args: ort_logits(*args) * 1.01)  # a 1% error: over 1e-4
    with pytest.raises(SystemExit) as exit_info:
        export_cli.main([str(tmp_path)])
    assert exit_info.value.code == 1
    assert json.loads((tmp_path / "export.json").read_text())["parity_fp32"]["passed"] is False


@pytest.mark.parametrize("fp16, engine_error, passed", [(True, 1e-3, True), (False, 1e-3, False)])
def test_the_tensorrt_export_builds_from_the_right_file_and_checks_the_engine(fp16, engine_error, passed, tmp_path, monkeypatch):
    """The glue of python -m export --tensorrt on a machine without TensorRT, a stand-in engine in TensorRT's place
    (test_tensorrt_engine_parity builds a real one where it exists): the engine is built from the file of the asked
    precision with the asked profile, checked against the fp32 ONNX's logits (run once) within that precision's
    tolerance, and a failed check exits 1."""
    from export import cli as export_cli, tensorrt

    model = small_model("mobilenet_v3_small")
    graph.save_checkpoint(tmp_path / "model.pt", model, graph.make_arch("mobilenet_v3_small", 10, 1, "small", SMALL_INPUT))
    built, ort_runs = {}, []

    def build_engine(onnx_path, engine_path, input_size, **profile):
        built.update(onnx=onnx_path.name, **profile)
        engine_path.write_bytes(b"engine")
        return engine_path

    class StandInEngine:  # the network in torch, off by ``engine_error`` relative
        def __init__(self, engine_path, batch_size, input_size):
            built["runner_batch"] = batch_size

        def logits(self, images):
            return parity.torch_logits(model, images) * (1 + engine_error)

    ort_logits = parity.ort_logits
    monkeypatch.setattr(parity, "ort_logits", lambda *args: ort_runs.append(args[0].name) or ort_logits(*args))
    monkeypatch.setattr(tensorrt, "require_tensorrt", lambda: None)
    monkeypatch.setattr(tensorrt, "build_engine", build_engine)
    monkeypatch.setattr(tensorrt, "EngineRunner", StandInEngine)
    args = [str(tmp_path), "--tensorrt", "--min-batch", "2", "--opt-batch", "4", "--max-batch", "16", "--samples", "32"]
    if passed:
        export_cli.main(args + (["--fp16"] if fp16 else []))
    else:
        with pytest.raises(SystemExit) as exit_info:
            export_cli.main(args + (["--fp16"] if fp16 else []))
        assert exit_info.value.code == 1
    report = json.loads((tmp_path / "export.json").read_text())
    engine_file = "model_fp16.onnx" if fp16 else "model.onnx"
    assert built == {"onnx": engine_file, "min_batch": 2, "opt_batch": 4, "max_batch": 16,
                     "timing_cache": tmp_path / "timing.cache", "runner_batch": 16}
    assert report["engine_onnx"] == engine_file and report["engine_fp16"] is fp16 and report["engine_profile"] == [2, 4, 16]
    assert report["parity_tensorrt"]["passed"] is passed and (tmp_path / "model.engine").is_file()
    assert ort_runs.count("model.onnx") == 1  # the engine's reference reuses the fp32 parity check's logits


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message for a machine without a GPU")
def test_a_gpu_route_this_machine_cannot_run_is_refused_before_the_export_it_would_replace(tmp_path, capsys):
    model = small_model("mobilenet_v3_small")
    graph.save_checkpoint(tmp_path / "model.pt", model, graph.make_arch("mobilenet_v3_small", 10, 1, "small", SMALL_INPUT))
    main_in_process(export_main, capsys, str(tmp_path), "--fp16")
    before = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    result = main_in_process(export_main, capsys, str(tmp_path), "--route", "ort-cuda")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "--route ort-cuda runs ONNX Runtime's CUDAExecutionProvider on a CUDA GPU, and PyTorch sees none" in result.stderr
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir()} == before  # export.json and model_fp16.onnx too


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a GPU provider that cannot load: none loads without a GPU")
def test_a_gpu_provider_that_falls_back_to_the_cpu_is_refused(tmp_path):
    """onnxruntime-gpu lists its CUDA provider even where no GPU exists, then runs on the CPU: never a 'passed' GPU route."""
    path = export_onnx(small_model("mobilenet_v3_small"), SMALL_INPUT, tmp_path / "model.onnx")
    if not parity.has_provider("CUDAExecutionProvider"):
        with pytest.raises(UserError, match="CUDAExecutionProvider is not in this ONNX Runtime; install onnxruntime-gpu"):
            parity.ort_session(path, parity.ORT_PROVIDERS["ort-cuda"])
        return
    with pytest.raises(UserError, match="could not load CUDAExecutionProvider \\(it fell back to CPUExecutionProvider\\)"):
        parity.ort_session(path, parity.ORT_PROVIDERS["ort-cuda"])


@pytest.mark.parametrize("args, message", [
    (["--opset", "13"], "--opset 13 is not one this toolkit exports"),
    (["--opset", "99"], "use 17 to"),  # past the exporter's newest, torch printed its whole graph before the error
    (["--samples", "0"], "argument --samples: 0 must be at least 1"),
    (["--samples", "20000000"], "--samples 20000000: the parity check runs them as one batch; give at most 1024"),
    (["--max-batch", "4"], "<= --max-batch (4)"),
])
def test_cli_bad_flags_are_one_line(args, message, tmp_path, capsys):
    model = small_model("mobilenet_v3_small")
    graph.save_checkpoint(tmp_path / "model.pt", model, graph.make_arch("mobilenet_v3_small", 10, 1, "small", SMALL_INPUT))
    result = main_in_process(export_main, capsys, str(tmp_path), *args)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1 and message in result.stderr


def test_cli_bad_input(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    result = subprocess.run([sys.executable, "-m", "export", str(tmp_path / "notes.txt")], capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        f"error: '{tmp_path / 'notes.txt'}' is not a PyTorch checkpoint (KeyError); pass a model.pt written by this toolkit"]


def test_tensorrt_missing_is_one_clear_line():
    from export import tensorrt as trt_export

    try:
        import tensorrt  # noqa: F401
        missing = None if torch.cuda.is_available() else "TensorRT needs a CUDA GPU and none is visible"
    except ImportError:
        missing = "TensorRT is not installed; install it with `pip install 'cnn-compress[tensorrt]'`"
    if missing is None:
        pytest.skip("TensorRT and a GPU are present: the engine path is exercised by the GPU tests")
    with pytest.raises(UserError, match=re.escape(missing)):
        trt_export.require_tensorrt()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="TensorRT engine build needs a CUDA GPU and the tensorrt package")
def test_tensorrt_engine_parity(tmp_path):
    pytest.importorskip("tensorrt", reason="the tensorrt package is not installed (pip install 'cnn-compress[tensorrt]')")
    from export.tensorrt import EngineRunner, build_engine

    # Trained weights: a randomly initialised small MobileNetV2's logits (about 1e-11) are under fp16's range.
    model, _ = graph.load_checkpoint(TEACHER)
    onnx_path = export_onnx(model, SMALL_INPUT, tmp_path / "model.onnx")
    fp16_path = export_onnx(model, SMALL_INPUT, tmp_path / "model_fp16.onnx", fp16=True)
    engine = build_engine(fp16_path, tmp_path / "model.engine", SMALL_INPUT, max_batch=8, timing_cache=tmp_path / "cache")
    images = torch.randn(8, *SMALL_INPUT)
    check = parity.compare(parity.ort_logits(onnx_path, images), EngineRunner(engine, 8, SMALL_INPUT).logits(images.cuda()))
    assert check["rel_diff"] < 1e-2
    with pytest.raises(UserError, match="outside the engine profile"):  # the engine's own profile, max 8
        EngineRunner(engine, 16, SMALL_INPUT)


def test_batch_outside_the_engine_profile_is_refused_in_one_line():
    from export.tensorrt import check_batch

    check_batch((1, 16), 16)
    with pytest.raises(UserError, match=r"batch size 64 is outside the engine profile \[1, 16\]"):
        check_batch((1, 16), 64)
