"""The user's view: python -m compress end to end, and one-line errors for bad input."""
import contextlib
import errno
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from compress import benchmark, cli, finetune, graph, io, recipes, train, zoo
from compress.errors import exit_on_user_error

from conftest import TEACHER, main_in_process



def run_main(capsys, *args):
    """python -m compress in this process, for the inputs it refuses before any work (conftest.main_in_process)."""
    return main_in_process(cli.main, capsys, *args)


def run_cli(*args, check=False):
    return subprocess.run([sys.executable, "-m", "compress", *args], capture_output=True, text=True, check=check)


def assert_one_line_error(result, message):
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert message in result.stderr


@pytest.mark.parametrize("args,message", [
    (["--target-latency", "2.5"], "ambiguous"),
    (["--target-latency", "fast"], "malformed"),
    (["--target-latency", "-1ms"], "malformed"),
    (["--target-latency=-1ms"], "malformed"),
    (["--target-macs", "abc"], "malformed"),
    (["--target-macs", "0.25"], "ambiguous"),
    (["--target-latency", "0.5x", "--method", "magic"], "unknown method"),
    (["--target-latency", "0.5x", "--backend", "quantum"], "unknown backend"),
    (["--target-latency", "0.5x", "--backend", "ort-cpu", "--precision", "fp16"], "ort-cpu measures fp32 only"),
    (["--target-latency", "0.5x", "--weights", "/nonexistent/teacher.pt"], "does not exist"),
    ([], "give exactly one target"),
    (["--target-latency", "0.5x", "--model", "vgg16"], "unknown model 'vgg16'"),
    (["--target-macs", "0.5x", "--steps", "0"], "argument --steps: 0 must be at least 1"),
    (["--target-macs", "0.5x", "--finetune-batch", "0"], "argument --finetune-batch: 0 must be at least 1"),
    (["--target-latency", "0.5x", "--bench-rounds", "0"], "argument --bench-rounds: 0 must be at least 1"),
    (["--target-latency", "0.5x", "--heldout", "-2"], "argument --heldout: -2 must be at least 1"),
    (["--target-latency", "0.5x", "--max-keep-ratio", "0"], "--max-keep-ratio 0.0 must lie in (0, 1]"),
    (["--target-latency", "0.5x", "--device", "gpu"], "unknown device 'gpu'"),
    (["--target-macs", "0.5x", "--finetune-lr", "-1"], "argument --finetune-lr: -1 must be a finite number above 0"),
    (["--target-macs", "0.5x", "--align", "0"], "argument --align: 0 must be at least 1"),
    (["--target-latency", "0.5x", "--resume", "--overwrite"], "argument --overwrite: not allowed with argument --resume"),
    (["--target-latency", "0.5x", "--model", "resnet18", "--weights", TEACHER], "holds a mobilenet_v2; drop --model"),
    (["--target-latency", "0.5x", "--min-share", "2"], "--min-share 2.0 must lie in [0, 1]"),
    (["--target-latency", "0.5x", "--finetune-warmup", "1"], "--finetune-warmup 1.0 must lie in [0, 1)"),
    (["--target-latency", "0.5x", "--data", "synthetic", "--method", "imitation"], "--method imitation needs trained weights"),
    (["--target-latency", "0.5x", "--tolerance", "nan"], "argument --tolerance: nan must be a finite number of at least 0"),
    (["--target-latency", "0.5x", "--input-size", "64"], "was trained at 1x28x28: drop --input-size"),
    (["--target-macs", "0.5x", "--config", TEACHER], "is not a text file; give a YAML recipe"),
    (["--target-macs", "0.5x", "--config", str(Path(TEACHER).parent)], "is a folder; give a YAML file"),
    (["--target-macs", "0.5x", "--weights", "w" * 300 + ".pt"], "File name too long: 'www"),
    (["--target-macs", "0.5x", "--data-dir", TEACHER], "is not a folder; pass an existing folder to --data-dir"),
    (["--target-latency", "0.5x", "--data", "synthetic", "--data-dir", "."], "and --data synthetic does not read it"),
    (["--target-latency", "0.5x", "--data", "synthetic", "--train-limit", "64"], "--data synthetic has none; drop --train-limit"),
    (["--target-macs", "0.5x", "--seed", str(2**64)], "argument --seed: 18446744073709551616 must lie from 0 to 2**64 - 1"),
])
def test_bad_input(args, message, tmp_path, capsys):
    assert_one_line_error(run_main(capsys, *args, "--out", str(tmp_path / "run")), message)


@pytest.mark.parametrize("report_json", ["{}", "not JSON", "[1, 2]"])
def test_report_refuses_a_report_json_no_run_wrote_in_one_line(report_json, tmp_path, capsys):
    (tmp_path / "report.json").write_text(report_json)
    (tmp_path / "bench.csv").write_text("")
    message = "is not the JSON the toolkit wrote" if report_json == "not JSON" else "is not the report of a python -m compress run"
    assert_one_line_error(run_main(capsys, "report", str(tmp_path)), f"report.json' {message}")


@pytest.mark.parametrize("module, args, message", [
    ("compress", ["report"], "the following arguments are required: runs; see python -m compress report --help"),
    ("compress", ["report", "nowhere"], "run directory 'nowhere' does not exist"),
    ("compress", ["--target-latency", "0.5x", "--batch-size", "eight"], "invalid positive_int value: 'eight'; see python -m compress --help"),
    ("compress.train", ["--epochs", "many"], "invalid positive_float value: 'many'; see python -m compress.train --help"),
    ("compress.benchmark", ["--jobs", "x"], "invalid positive_int value: 'x'; see python -m compress.benchmark --help"),
    ("bench", [], "required: models; see python -m bench --help"),
    ("export", [], "required: source; see python -m export --help"),
])
def test_argparse_errors_are_one_line_in_every_command(module, args, message):
    result = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True)
    assert_one_line_error(result, message)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message for a machine without a GPU")
@pytest.mark.parametrize("recipe, message", [
    ("batch_size: [8\n", "is not valid YAML"),
    ("- batch_size: 8\n", "must map settings to values"),
    ("finetune_epoch: 5\n", "unknown setting 'finetune_epoch'"),
    ("teacher: t.pt\n", "unknown setting 'teacher'"),
    ("min_share: half\n", "'min_share: half' is not a valid float"),
    ("steps: 2.5\n", "'steps: 2.5' is not a valid positive int"),
    ("steps: 0\n", "'steps: 0': 0 must be at least 1"),
    ("bench_iters: 0\n", "bench_iters 0 must be a finite number of at least 1"),
    ("bench_warmup: -0.5\n", "bench_warmup -0.5 must be a finite number of at least 0"),
    ("bench_seconds: .inf\n", "bench_seconds inf must be a finite number of at least 0"),  # timed for ever
    ("bench_warmup: .nan\n", "bench_warmup nan must be a finite number of at least 0"),
    ("finetune_lr: -0.5\n", "'finetune_lr: -0.5': -0.5 must be a finite number above 0"),
    ("kd: 1\n", "'kd: 1' should be bool"),
    ("precision: int8\n", "'precision: int8' should be one of fp32, fp16"),
    ("bench_seconds: fast\n", "'bench_seconds: fast' should be a number"),
    ("tolerance:\n", "'tolerance' has no value; give one or delete the line for its default"),
])
def test_a_bad_recipe_is_one_line(recipe, message, tmp_path, capsys):
    (tmp_path / "recipe.yaml").write_text(recipe)
    assert_one_line_error(run_main(capsys, "--config", str(tmp_path / "recipe.yaml"), "--target-latency",
                                          "0.5x", "--out", str(tmp_path / "run")), message)


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_install_stops_before_pip_where_the_disk_cannot_hold_the_venv(tmp_path):
    """torch's CUDA build takes 6 GiB: one line up front, not pip running out of space half-way (stop 34's CI)."""
    venv = tmp_path / "venv"
    result = subprocess.run(["make", "-C", str(Path(__file__).resolve().parents[1]), "install", f"VENV={venv}",
                             "VENV_KIB=999999999999"], capture_output=True, text=True)
    assert result.returncode != 0
    assert f"error: installing needs about 6.5 GiB free under {tmp_path}/" in result.stderr
    assert not venv.exists()


def test_out_is_never_a_directory_of_other_files(tmp_path, capsys):
    """--overwrite replaces only a run of this command: a mistyped --out must not delete a project."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "config.yaml").write_text("name: my project\n")
    assert_one_line_error(run_main(capsys, "--target-macs", "0.5x", "--out", str(project), "--overwrite"),
                          "not a run of python -m compress")
    assert (project / "config.yaml").read_text() == "name: my project\n"
    assert_one_line_error(run_main(capsys, "--target-macs", "0.5x", "--out", str(project / "config.yaml")), "is a file")
    (project / "config.yaml").write_bytes(b"\xff\xfe not YAML: [")  # another program's, not even text
    assert_one_line_error(run_main(capsys, "--target-macs", "0.5x", "--out", str(project)), "not a run of python -m compress")


def test_a_heldout_subset_as_large_as_the_training_split_is_refused_before_the_baseline(tmp_path, capsys, monkeypatch):
    from compress import pipeline

    monkeypatch.setattr(pipeline, "measure_baseline", lambda *args: pytest.fail("measured before refusing"))
    assert_one_line_error(run_main(capsys, "--target-macs", "0.5x", "--train-limit", "256", "--heldout", "256", "--out",
                                   str(tmp_path / "run")), "--heldout 256 takes the whole training split (256 images)")
    assert not (tmp_path / "run").exists()


def test_resume_where_there_is_no_run_says_it_starts_one(tmp_path, capsys, monkeypatch):
    """A mistyped --out with --resume started a whole new run without a word."""
    from compress import pipeline

    def started(config):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "run", started)
    result = run_main(capsys, "--target-macs", "0.5x", "--out", str(tmp_path / "typo"), "--resume")
    assert result.stderr.startswith(f"no run in '{tmp_path / 'typo'}' to resume: starting a new one\n")


def test_sigterm_removes_temporary_files_and_is_one_line(tmp_path):
    """SIGTERM (timeout, docker stop, a job scheduler) left the exported model of a bench in the temporary folder."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    bench = subprocess.Popen([sys.executable, "-m", "bench", TEACHER, "--backend", "ort-cpu", "--min-iters", "100000000"],
                             env={**os.environ, "TMPDIR": str(scratch)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    for _ in range(600):  # until the export the bench times is written
        if list(scratch.rglob("*.onnx")) or bench.poll() is not None:
            break
        time.sleep(0.1)
    bench.terminate()
    stdout, stderr = bench.communicate(timeout=60)
    assert bench.returncode == 143 and stderr.strip() == "interrupted", stderr
    assert not list(scratch.rglob("*.onnx")) and not list(scratch.glob("tmp*"))  # (torch's own caches stay)


def test_ctrl_c_is_one_line_that_says_how_to_continue(tmp_path, capsys, monkeypatch):
    """An interrupted run printed a KeyboardInterrupt traceback; what it finished stays for --resume."""
    from compress import pipeline

    def interrupted(config):
        (tmp_path / "run" / "baseline.json").write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "run", interrupted)
    result = run_main(capsys, "--target-macs", "0.5x", "--out", str(tmp_path / "run"))
    assert result.returncode == 130 and "Traceback" not in result.stderr
    assert result.stderr.strip() == "interrupted; the same command with --resume continues from the last finished stage"
    assert (tmp_path / "run" / "baseline.json").is_file()


def resolved(*argv):
    parser = cli.get_args_parser()
    return cli.resolve_config(parser.parse_args(list(argv)), list(argv), parser)


def test_a_target_flag_replaces_the_recipes_target(tmp_path):
    """Flags override a recipe, its target too: a recipe's --target-latency and a flag's --target-macs are not two targets."""
    (tmp_path / "recipe.yaml").write_text("target_latency: 0.5x\nbatch_size: 4\n")
    config = resolved("--config", str(tmp_path / "recipe.yaml"), "--target-macs", "0.25x", "--out", str(tmp_path / "run"))
    assert (config["target_kind"], config["target"], config["batch_size"]) == ("macs", "0.25x", 4)
    assert resolved("--config", str(tmp_path / "recipe.yaml"), "--out", str(tmp_path / "run"))["target"] == "0.5x"


def test_resume_continues_from_the_same_weights_at_another_path(tmp_path):
    """The checkpoint is known by its content: a relative path, a moved checkout or a copy continue the run."""
    weights = tmp_path / "teacher.pt"
    shutil.copy(TEACHER, weights)
    argv = ["--target-macs", "0.5x", "--out", str(tmp_path / "run")]
    cli.prepare_run_dir(resolved("--weights", str(weights), *argv), resume=False, overwrite=False)
    cli.prepare_run_dir(resolved("--weights", TEACHER, *argv), resume=True, overwrite=False)
    assert io.read_run_config(tmp_path / "run")["weights"] == TEACHER  # the path it continues from


def test_resume_refuses_weights_retrained_at_the_same_path(tmp_path, capsys):
    """The baseline and selection curves were measured on the old weights: the path alone does not say they still hold."""
    weights = tmp_path / "teacher.pt"
    shutil.copy(TEACHER, weights)
    argv = ["--weights", str(weights), "--target-macs", "0.5x", "--out", str(tmp_path / "run")]
    cli.prepare_run_dir(resolved(*argv), resume=False, overwrite=False)
    model, arch = graph.load_checkpoint(weights)
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    graph.save_checkpoint(weights, model, arch)
    assert_one_line_error(run_main(capsys, *argv, "--resume"), "holds a run with a different configuration (weights_sha256)")


def test_a_path_the_filesystem_refuses_is_one_line_and_other_os_errors_are_not_hidden(capsys):
    def refused(error):
        @exit_on_user_error
        def main(argv):
            raise error
        return main

    result = main_in_process(refused(PermissionError(errno.EACCES, "Permission denied", "/srv/runs")), capsys)
    assert_one_line_error(result, "error: Permission denied: '/srv/runs'; fix its permissions or use another path")
    assert_one_line_error(main_in_process(refused(OSError(errno.ENOSPC, "No space left on device")), capsys),
                          "error: No space left on device; free some space or write elsewhere")
    with pytest.raises(OSError, match="Input/output error"):  # a failing disk is not the user's input
        main_in_process(refused(OSError(errno.EIO, "Input/output error")), capsys)


def test_train_checks_its_device_and_output_before_any_epoch(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(train.finetune, "train", lambda *args, **kwargs: pytest.fail("trained before refusing"))
    (tmp_path / "notes.txt").write_text("")
    for args, message in [(["--device", "gpu"], "unknown device 'gpu'"),
                          (["--workers", "-1"], "argument --workers: -1 must be at least 0"),
                          (["--out", str(tmp_path)], f"--out '{tmp_path}' is a folder; give a file name"),
                          (["--out", str(tmp_path / "notes.txt" / "student.pt")], "is a file, not a folder"),
                          (["--out", "/proc/student.pt"], "cannot write in '/proc'"),  # even as root: a write is tried
                          (["--model", "resnet18"], "holds a mobilenet_v2; drop --model"),
                          (["--stem", "imagenet"], "holds a network with the small stem; drop --stem")]:
        out = ["--out", str(tmp_path / "student.pt")] if "--out" not in args else []
        assert_one_line_error(main_in_process(train.main, capsys, "--weights", TEACHER, *out, *args), message)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    # A run's own network written over: its model.onnx, bench and report would describe another.
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.yaml").write_text("command: python -m compress --target-macs 0.5x\n")
    assert_one_line_error(main_in_process(train.main, capsys, "--weights", TEACHER, "--out", str(tmp_path / "run" / "model.pt")),
                          "is a file of the python -m compress run in")
    monkeypatch.setattr(train.finetune, "setup_distributed", lambda device: (0, 3))  # as under torchrun --nproc-per-node 3
    assert_one_line_error(main_in_process(train.main, capsys, "--weights", TEACHER, "--out", str(tmp_path / "student.pt")),
                          "--batch-size 128 is the global batch; give a multiple of the 3 processes")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message for a machine without a GPU")
def test_unavailable_device(tmp_path, capsys):
    assert_one_line_error(run_main(capsys, "--target-latency", "0.5x", "--device", "cuda", "--out", str(tmp_path)),
                          "no CUDA GPU is visible")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message for a machine without a GPU")
def test_unavailable_backend(tmp_path, capsys):
    assert_one_line_error(run_main(capsys, "--target-latency", "0.5x", "--backend", "torch-cuda", "--out", str(tmp_path)),
                          "no CUDA GPU is visible to PyTorch on this machine; ort-cpu and torch-cpu run here")


def test_target_at_or_above_baseline(tmp_path, capsys, monkeypatch):
    """A counted target is checked against the counted baseline before the network is timed (seconds on a CPU)."""
    from compress import timing

    monkeypatch.setattr(timing, "time_model", lambda *args, **kwargs: pytest.fail("timed before the MACs target was checked"))
    assert_one_line_error(run_main(capsys, "--target-macs", "10G", "--out", str(tmp_path / "run")), "nothing to do")
    assert not (tmp_path / "run").exists()  # found mid-run, yet nothing half-written is left
    (tmp_path / "empty").mkdir()  # a folder made for the run: it stays, as empty as it was
    assert_one_line_error(run_main(capsys, "--target-macs", "10G", "--out", str(tmp_path / "empty")), "nothing to do")
    assert list((tmp_path / "empty").iterdir()) == []


def test_artefacts_written_whole_with_the_permissions_open_gives(tmp_path):
    """Atomic writes go through a temporary file, which mkstemp makes owner-only; the artefact must not stay so."""
    def killed_midway(f):
        f.write(b"half an ONNX file")
        raise RuntimeError("killed")

    old_umask = os.umask(0o027)
    try:
        io.write_json(tmp_path / "bench.json", {"median_ms": 1.0})
        with pytest.raises(RuntimeError):
            io.write_with(tmp_path / "model.onnx", killed_midway)
    finally:
        os.umask(old_umask)
    assert [f.name for f in tmp_path.iterdir()] == ["bench.json"]  # the failed write left nothing behind
    assert (tmp_path / "bench.json").stat().st_mode & 0o777 == 0o640


def test_weights_that_are_not_a_checkpoint(tmp_path, capsys):
    weights = tmp_path / "notes.pt"
    weights.write_text("not a checkpoint")
    assert_one_line_error(run_main(capsys, "--target-macs", "0.5x", "--weights", str(weights), "--out", str(tmp_path / "run")),
                          "is not a PyTorch checkpoint")
    assert not (tmp_path / "run").exists()


def test_macs_target_end_to_end_and_resume(tmp_path):
    out = tmp_path / "run"
    recipe = tmp_path / "quick.yaml"  # every stage runs, on the fewest images and timing runs that exercise it
    recipe.write_text("bench_iters: 5\nbench_seconds: 0.1\nbench_warmup: 0.05\nbench_rounds: 1\n")
    common = ["--config", str(recipe), "--target-macs", "0.5x", "--train-limit", "2048", "--finetune-epochs", "0.02",
              "--max-keep-ratio", "0.01", "--at-widths", "--steps", "3", "--candidates", "2", "--select-batch", "2", "--heldout", "16",
              "--recal-batches", "1", "--out", str(out)]
    run_cli(*common, check=True)
    for name in ("config.yaml", "baseline.json", "selection.json", "allocation.json", "selection_at_widths.json", "model.pt",
                 "model.onnx", "bench.csv", "report.md", "report.json", "accuracy_vs_latency.png", "widths.png"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "report.json").read_text())
    assert 0.98 * 0.5 <= summary["after"]["macs"] / summary["before"]["macs"] == summary["macs_kept"] <= 0.5
    assert f"{summary['params_kept']:.1%} of the params kept" in (out / "report.md").read_text()
    ran = json.loads((out / "finetune.json").read_text())["history"][-1]["epoch"]  # one step: more than the 0.02 asked
    assert ran > 0.02 and f"fine-tuned {ran:.4g} epochs" in (out / "report.md").read_text()
    assert summary["after"]["timed"] == "model.onnx"  # the final bench timed the file that ships
    assert summary["parity"]["rel_diff"] < 1e-4 and 0.0 < summary["after"]["top1"] <= 1.0
    model, arch = graph.load_checkpoint(out / "model.pt")
    full = {g.id: g.width for g in graph.list_groups(graph.build_from_arch({**arch, "widths": {}}), tuple(arch["input_size"]))}
    assert sum(arch["widths"].values()) < sum(full.values())
    cut = {gid: width for gid, width in arch["widths"].items() if width < full[gid]}
    assert cut and all(width % 8 == 0 for width in cut.values())  # a MACs target rounds to 8 unless --align says otherwise
    assert json.loads((out / "allocation.json").read_text())["align"] == 8
    # The same directory: refused without --resume, resumed (every stage already done) with it, refused for another config.
    assert_one_line_error(run_cli(*common), "--resume")
    resumed = run_cli(*common, "--resume", check=True)
    assert "Compression report" in resumed.stdout
    assert_one_line_error(run_cli(*common[:-2], "--method", "l1", "--out", str(out), "--resume"), "different configuration")
    table = run_cli("report", str(out), "--out", str(tmp_path / "pareto"), check=True)
    assert "imitation" in table.stdout and (tmp_path / "pareto" / "pareto.png").is_file()
    assert_one_line_error(run_cli("report", str(out), f"{out}/"), f"'{out}' is named twice; give each run once")
    assert_one_line_error(run_cli("report", str(out), "--out", str(out)), "is a run directory; give the table and plot another")
    # A run timed at another batch size cannot share the latency axis.
    shutil.copytree(out, tmp_path / "batch16")
    bench = (tmp_path / "batch16" / "bench.csv").read_text().splitlines()
    column = bench[0].split(",").index("batch_size")
    rows = [line.split(",") for line in bench[1:]]
    for row in rows:
        row[column] = "16"
    (tmp_path / "batch16" / "bench.csv").write_text("\n".join([bench[0], *(",".join(row) for row in rows)]) + "\n")
    assert_one_line_error(run_cli("report", str(out), str(tmp_path / "batch16")), "batch_size 16")
    # A bench.csv without the pruned row, or none at all: one line each, not a KeyError or FileNotFoundError.
    (tmp_path / "batch16" / "bench.csv").write_text("\n".join(bench[:2]) + "\n")
    assert_one_line_error(run_cli("report", str(tmp_path / "batch16")), "is not a run's final bench (no row for the pruned model")
    (tmp_path / "batch16" / "bench.csv").unlink()
    assert_one_line_error(run_cli("report", str(tmp_path / "batch16")), "is not a finished run directory (no bench.csv)")
    # A stage file cut short outside the toolkit (its writes are atomic): one line naming it, not a JSONDecodeError.
    (out / "finetune.json").write_text((out / "finetune.json").read_text()[:40])
    assert_one_line_error(run_cli(*common, "--resume"), "finetune.json' is not the JSON the toolkit wrote")
    (out / "finetune.json").write_text("[]")  # JSON, but not what the stage wrote: one line too, not a TypeError
    assert_one_line_error(run_cli(*common, "--resume"), "finetune.json' is not the finetune.json this toolkit writes (it is not")
    allocation = (out / "allocation.json").read_text()
    (out / "allocation.json").write_text("{}")
    assert_one_line_error(run_cli(*common, "--resume"), "allocation.json' is not the allocation.json this toolkit writes (it lacks 'widths')")
    (out / "allocation.json").write_text(allocation)
    (out / "finetune.json").unlink()  # and a network the run wrote, damaged since: the fix is to make it again
    (out / "rebuilt.pt").write_bytes((out / "rebuilt.pt").read_bytes()[:100])
    assert_one_line_error(run_cli(*common, "--resume"), "rebuilt.pt', which this run wrote, cannot be read any more; delete it")
    # Pruning the run's own network further, into the same --out: refused, where --overwrite deleted the input first.
    assert_one_line_error(run_cli(*common, "--weights", str(out / "model.pt"), "--overwrite"), "is a file this run writes in --out")
    assert (out / "model.pt").is_file()
    (out / "latency_cache.json").write_text("[]")  # valid JSON, not the cache: one line when a timing reads it
    (out / "baseline.json").unlink()
    assert_one_line_error(run_cli(*common, "--resume"), "latency_cache.json' is not the latency cache this toolkit writes")


def test_a_bare_state_dict_or_a_torchvision_weights_name_is_imported(tmp_path):
    """ImageNet weights from outside the toolkit: a state_dict file for --model, or a torchvision weights name read from the
    local cache (nothing is downloaded; offline, one line says where the file must be)."""
    state_dict = tmp_path / "mbv3.pth"
    torch.save(zoo.build_model("mobilenet_v3_small").state_dict(), state_dict)
    out = tmp_path / "run"
    run_cli("--model", "mobilenet_v3_small", "--weights", str(state_dict), "--data", "synthetic", "--input-size", "64",
            "--target-macs", "0.5x", "--method", "l1", "--out", str(out), check=True)
    unpruned = graph.read_checkpoint(out / "unpruned.pt")
    assert unpruned["arch"]["model"] == "mobilenet_v3_small" and unpruned["arch"]["input_size"] == [3, 64, 64]
    assert torch.equal(unpruned["state_dict"]["features.0.0.weight"], torch.load(state_dict)["features.0.0.weight"])
    assert (out / "model.onnx").is_file() and json.loads((out / "report.json").read_text())["macs_kept"] <= 0.5
    # Its 1000 classes do not fit Fashion-MNIST's 10: refused before any work.
    assert_one_line_error(run_cli("--model", "mobilenet_v3_small", "--weights", str(state_dict), "--target-macs", "0.5x",
                                  "--out", str(tmp_path / "fmnist")), "predicts 1000 classes, but data 'fashion-mnist' gives [3, 224, 224] and 10")
    offline = subprocess.run([sys.executable, "-m", "compress", "--model", "resnet18", "--weights", "ResNet18_Weights.IMAGENET1K_V1",
                              "--data", "synthetic", "--target-latency", "0.5x", "--out", str(tmp_path / "tv")],
                             capture_output=True, text=True, env={**os.environ, "TORCH_HOME": str(tmp_path / "hub")})
    assert_one_line_error(offline, "are not in the local cache")


def test_input_size_resizes_the_images_of_a_folder_too(tmp_path):
    """--input-size built the network at that side but loaded an image folder at 224, and the run was refused as if the
    weights had been trained on other data."""
    from PIL import Image

    from compress import pipeline

    for split in ("train", "val"):
        for label in ("cat", "dog"):
            (tmp_path / "images" / split / label).mkdir(parents=True)
            for i in range(3):
                Image.new("RGB", (40, 40), (i * 90, 20, 200)).save(tmp_path / "images" / split / label / f"{i}.png")
    torch.save(zoo.build_model("mobilenet_v3_small", num_classes=2).state_dict(), tmp_path / "mbv3.pth")
    config = {"model": "mobilenet_v3_small", "weights": str(tmp_path / "mbv3.pth"), "input_size": 64,
              "data": f"imagefolder:{tmp_path / 'images'}", "finetune_batch": 2, "heldout": 2, "device": "cpu"}
    model, arch, data = pipeline.load(config, pipeline.unpruned_network(config, tmp_path / "unpruned.pt"))
    assert tuple(data.input_size) == tuple(arch["input_size"]) == (3, 64, 64)
    assert next(iter(data.val))[0].shape == (2, 3, 64, 64)


def test_a_state_dict_without_a_classifier_is_refused_in_one_line(tmp_path, capsys):
    """The class count comes from the classifier's rows: a file of tensors with no matrix among them raised an
    IndexError, and the half-made run directory stayed."""
    path = tmp_path / "convs.pth"
    torch.save({"features.0.weight": torch.zeros(8, 3, 3, 3)}, path)
    out = tmp_path / "run"
    assert_one_line_error(run_main(capsys, "--model", "mobilenet_v3_small", "--weights", str(path), "--data", "synthetic",
                                   "--target-macs", "0.5x", "--out", str(out)), "hold no classifier")
    assert not out.exists()


def test_a_checkpoint_that_names_its_arch_is_read_as_a_state_dict(tmp_path):
    """pytorch/examples' ImageNet checkpoints hold {"arch": "resnet18", "state_dict": ...}: weights for --model, not a
    toolkit checkpoint whose arch rebuilds the network."""
    path = tmp_path / "model_best.pth.tar"
    state_dict = zoo.build_model("resnet18").state_dict()
    torch.save({"epoch": 90, "arch": "resnet18", "state_dict": {f"module.{k}": v for k, v in state_dict.items()},
                "best_acc1": torch.tensor(69.8)}, path)
    assert graph.checkpoint_arch(path) is None
    assert zoo.read_state_dict(path).keys() == state_dict.keys()


def deterministic_timings(monkeypatch, back_to_back=1.08):
    """Every timing of the command made a function of MACs (0.1 ms per MMAC), with the back-to-back protocol of the
    confirmation and the final bench reading ``back_to_back`` times a probe."""
    from bench import latency
    from compress import macs, timing

    def milliseconds(model, input_size):
        if isinstance(model, Path):  # the final bench times the shipped model.onnx
            model = graph.load_checkpoint(model.parent / "model.pt")[0]
        return 0.1 * macs.count_macs_params(model, input_size)[0] / 1e6

    def stats(config, ms, input_size):
        settings = latency.settings(config["backend"], config["batch_size"], config["precision"], input_size, config["threads"])
        return {**settings, **latency.statistics_ms([ms] * 3, config["batch_size"])}

    @contextlib.contextmanager
    def against_unpruned(config, unpruned, input_size, unpruned_ms, cache_path):
        yield lambda make_networks, key, rounds=1: [milliseconds(network, input_size) for network in make_networks()]

    monkeypatch.setattr(timing, "time_model", lambda config, model, input_size, cache_path, key: stats(
        config, milliseconds(model, input_size), input_size))
    monkeypatch.setattr(timing, "latency_against_unpruned", against_unpruned)
    monkeypatch.setattr(timing, "time_back_to_back", lambda config, models, input_size: [
        stats(config, back_to_back * milliseconds(model, input_size), input_size) for model in models])


def test_a_final_bench_slower_than_the_probes_moves_the_choice_and_the_run_lands_in_the_window(tmp_path, monkeypatch, capsys):
    """Deterministic timings through the whole command: latency follows MACs, and the back-to-back protocol of the
    confirmation and the final bench reads 8% slower than a probe (as a burst made stop18_final's). The allocator's
    first choice re-times over the target, it moves on to more cuts, and the final bench lands inside the window. The
    teacher runs on synthetic input: accuracy is not in question here, so no test-split evaluation is spent on it."""
    deterministic_timings(monkeypatch)
    out = tmp_path / "run"
    args = ["--weights", TEACHER, "--data", "synthetic", "--heldout", "16", "--target-latency", "4ms", "--method", "l1",
            "--finetune-epochs", "0", "--backend", "ort-cpu", "--out", str(out)]
    cli.main(args)
    allocation = json.loads((out / "allocation.json").read_text())
    first, *moves = allocation["confirmations"]
    assert first["confirmed_ms"] > 4.0 and moves and allocation["cuts"] > first["cuts"]  # over the target: more cuts
    assert 0.9 * 4.0 <= allocation["measured_ms"] <= 4.0
    summary = json.loads((out / "report.json").read_text())
    assert 0.9 <= summary["latency_vs_target"] <= 1.0 and "inside [0.90, 1.00]" in capsys.readouterr().out
    # Deleting a stage's file redoes that stage and every later one, which are never read back stale.
    (out / "export.json").unlink()
    io.write_json(out / "bench.json", {"stale": True})
    cli.main([*args, "--resume"])
    assert (out / "export.json").is_file() and "stale" not in json.loads((out / "bench.json").read_text())


def test_a_target_out_of_reach_stops_before_the_selection_and_the_next_target_reuses_the_run(tmp_path, monkeypatch, capsys):
    """A target under the floor stops in one line before the selection, the costly stage, and keeps the baseline;
    --resume with another target reuses what is there (the selection too, once made) and replaces everything an
    earlier target made; any other change is still another run."""
    from compress import pipeline

    deterministic_timings(monkeypatch, back_to_back=1.0)
    out = tmp_path / "run"
    args = ["--weights", TEACHER, "--data", "synthetic", "--heldout", "16", "--method", "l1", "--finetune-epochs", "0",
            "--backend", "ort-cpu", "--out", str(out)]
    select = pipeline.select
    monkeypatch.setattr(pipeline, "select", lambda *args: pytest.fail("selection ran for a target out of reach"))
    refused = run_main(capsys, *args, "--target-latency", "0.001x")
    assert_one_line_error(refused, "below the floor")
    assert f"({out} keeps its measurements: add --out {out} --resume to a run with another target" in refused.stderr
    assert {"config.yaml", "baseline.json"} <= {path.name for path in out.iterdir()} <= set(pipeline.TARGET_FREE)
    assert_one_line_error(run_main(capsys, *args, "--target-macs", "0.001x", "--align", "8", "--out", str(tmp_path / "macs")),
                          "the narrowest network pruning allows has")
    # Another --align, like another target, reuses the run on --resume (the multiple is the allocation's alone).
    for align, message in (("512", "; ask for at least that, or let groups go narrower with a finer --align than 512"),
                           ("1", "; ask for at least that (")):  # the reach check each time, not another configuration
        assert_one_line_error(run_main(capsys, *args, "--target-macs", "0.0005x", "--align", align, "--out",
                                       str(tmp_path / "macs"), "--resume"), message)

    # Without --resume, another target is a different configuration, and the message says --resume reuses the run.
    assert_one_line_error(run_main(capsys, *args, "--target-latency", "4ms"), "--resume to reuse its measurements for the new target")
    monkeypatch.setattr(pipeline, "select", select)
    cli.main([*args, "--target-latency", "4ms", "--resume"])
    assert json.loads((out / "allocation.json").read_text())["target_ms"] == 4.0
    # Another target on the finished run: the selection is reused, the allocation, model and report are replaced.
    selection = (out / "selection.json").read_text()
    monkeypatch.setattr(pipeline, "select", lambda *args: pytest.fail("the selection was run again"))
    cli.main([*args, "--target-latency", "3ms", "--resume"])
    assert (out / "selection.json").read_text() == selection
    assert json.loads((out / "allocation.json").read_text())["target_ms"] == 3.0
    assert json.loads((out / "report.json").read_text())["target"] == "latency 3ms"
    # A new target at or above the unpruned network is refused before the finished run it would replace is touched.
    for target in (["--target-macs", "10G"], ["--target-latency", "1000ms"], ["--target-latency", "1.5x"]):
        assert_one_line_error(run_main(capsys, *args, *target, "--resume"), "nothing to do")
    assert (out / "model.pt").is_file() and json.loads((out / "report.json").read_text())["target"] == "latency 3ms"
    assert io.read_run_config(out)["target"] == "3ms"
    assert_one_line_error(run_main(capsys, *args[:-2], "--out", str(out), "--target-latency", "3ms", "--resume", "--seed", "1"),
                          "different configuration (seed)")
    # Another kind of target is another target too; files the user put in the run directory (a longer fine-tune and
    # its export) stay, through a new target and through --overwrite.
    (out / "ft5.pt").write_bytes(b"mine")
    (out / "ft5_export").mkdir()
    (out / "ft5_export" / "model.onnx").write_bytes(b"mine")
    cli.main([*args, "--target-macs", "0.5x", "--resume"])
    assert (out / "selection.json").read_text() == selection
    assert json.loads((out / "report.json").read_text())["target"] == "macs 0.5x"
    monkeypatch.setattr(pipeline, "select", select)
    cli.main([*args, "--target-macs", "0.5x", "--overwrite"])
    assert (out / "ft5.pt").read_bytes() == (out / "ft5_export" / "model.onnx").read_bytes() == b"mine"


def test_a_run_resumed_on_another_machine_times_again_and_keeps_its_selection(tmp_path, monkeypatch, capsys):
    """Timings hold for the machine and backend software that took them: --resume elsewhere (a run directory copied
    to the GPU box, an upgraded onnxruntime) measures the baseline and every probe again, and reuses the selection."""
    from bench import latency
    from compress import pipeline

    deterministic_timings(monkeypatch, back_to_back=1.0)
    out = tmp_path / "run"
    args = ["--weights", TEACHER, "--data", "synthetic", "--heldout", "16", "--method", "l1", "--finetune-epochs", "0",
            "--backend", "ort-cpu", "--target-latency", "4ms", "--out", str(out)]
    cli.main(args)
    selection = (out / "selection.json").read_text()
    io.write_json(out / "baseline.json", {**json.loads((out / "baseline.json").read_text()), "timed elsewhere": True})
    io.write_json(out / "latency_cache.json", {"timed elsewhere": True})  # these timings are stubbed, so none was cached
    monkeypatch.setattr(latency, "timed_with", lambda environment, backend: "another CPU, onnxruntime 9.9")
    assert_one_line_error(run_main(capsys, *args), "different configuration (timed_with); use another --out or "
                                                   "--overwrite, or --resume to reuse its selection curves")
    monkeypatch.setattr(pipeline, "select", lambda *args: pytest.fail("the selection was run again"))
    cli.main([*args, "--resume"])
    assert (out / "selection.json").read_text() == selection
    assert "timed elsewhere" not in json.loads((out / "baseline.json").read_text())
    assert not (out / "latency_cache.json").exists()
    assert io.read_run_config(out)["timed_with"] == "another CPU, onnxruntime 9.9"
    assert json.loads((out / "report.json").read_text())["target"] == "latency 4ms"


def test_the_reach_check_times_the_narrowest_network_once_for_the_allocation_too(tmp_path, monkeypatch):
    """The reach check and the allocation's floor at the same multiple time the same network: the allocation reads the
    reach check's timing back from the run's cache instead of timing it again."""
    from bench import latency
    from compress import budget, errors, macs, pipeline, timing

    model, arch = graph.load_checkpoint(TEACHER)
    input_size = tuple(arch["input_size"])
    timed = []

    def back_to_back(config, models, input_size, rounds=None):  # 0.1 ms per million MACs; the unpruned one is first
        timed.append(len(models) - 1)
        return [latency.statistics_ms([0.1 * macs.count_macs_params(m, input_size)[0] / 1e6] * 3, 8) for m in models]

    monkeypatch.setattr(timing, "time_back_to_back", back_to_back)
    monkeypatch.setattr(latency, "deployable", lambda model, *settings: model)
    config = {"target_kind": "latency", "target": "0.001x", "align": 8, "backend": "torch-cpu", "batch_size": 8,
              "precision": "fp32", "threads": 1, "out": str(tmp_path)}
    baseline = {"latency_ms": 0.1 * macs.count_macs_params(model, input_size)[0] / 1e6}
    with pytest.raises(errors.TargetOutOfReach, match="below the floor"):
        pipeline.check_reach(config, model, arch, baseline, tmp_path)
    assert timed == [1]
    # The allocation's floor, as allocate_latency builds it from a selection with a curve for every group.
    selection = {"groups": [{"id": group.id, "width": group.width, "curve": {"k": [1, group.width], "loss": [1.0, 0.0]}}
                            for group in graph.list_groups(model, input_size)]}
    narrowest = budget.shrinkable_groups(model, input_size, selection, 8)[3]
    with timing.latency_against_unpruned(config, model, input_size, baseline["latency_ms"],
                                           tmp_path / "latency_cache.json") as measure:
        floor_ms = timing.time_widths(measure, arch, [narrowest])[0]
    assert timed == [1] and floor_ms < baseline["latency_ms"]


def test_latency_target_on_random_weights(tmp_path, monkeypatch, capsys):
    """--data synthetic without --weights: the ImageNet-shape network with random weights, pruned to a measured latency.
    Timings are a function of MACs here: on real timings this short, the machine decides whether 0.6x is reachable."""
    deterministic_timings(monkeypatch, back_to_back=1.0)
    recipe = tmp_path / "quick.yaml"
    recipe.write_text("align: 8\n")
    out = tmp_path / "run"
    result = run_main(capsys, "--config", str(recipe), "--model", "mobilenet_v3_small", "--data", "synthetic", "--input-size",
                      "96", "--target-latency", "0.6x", "--backend", "torch-cpu", "--batch-size", "4", "--out", str(out))
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "report.json").read_text())
    allocation = json.loads((out / "allocation.json").read_text())
    assert summary["before"]["top1"] is None and summary["before"]["params"] > 2.5e6  # ImageNet shape: 1000 classes
    selection = json.loads((out / "selection.json").read_text())
    assert selection["method"] == "l1" and selection["curves"] == "macs lost"  # ordered by weights, no held-out pass
    assert all("top1" not in group["curve"] for group in selection["groups"])
    chosen = next(p for p in allocation["probes"] if p["cuts"] == allocation["confirmations"][0]["cuts"])
    inside = [p for p in allocation["probes"] if 0.9 <= p["measured_ms"] / allocation["target_ms"] <= 1.0]
    assert chosen["measured_ms"] <= allocation["target_ms"] and allocation["floor_ms"] < allocation["target_ms"]
    assert chosen in inside or not inside  # under the window only where no probe landed in it: the confirmation starts there
    confirmed = {c["cuts"]: c["confirmed_ms"] for c in allocation["confirmations"]}
    assert allocation["measured_ms"] == confirmed[allocation["cuts"]]  # the choice as re-timed, not as probed
    report_text = (out / "report.md").read_text()
    assert summary["after"]["macs"] < summary["before"]["macs"] and "not fine-tuned" in report_text
    assert "l1 (no loss: random weights, curves of MACs lost)" in report_text
    assert graph.read_checkpoint(out / "unpruned.pt")["arch"]["input_size"] == [3, 96, 96]


@pytest.mark.parametrize("target, message", [("100M", "at or above the unpruned network's 72.94M MACs; nothing to do"),
                                             ("0.0001x", "cannot be reached with one keep ratio in every group")])
def test_benchmark_refuses_a_target_the_teacher_cannot_meet_before_the_selections(target, message, tmp_path, capsys,
                                                                                   monkeypatch):
    monkeypatch.setattr(benchmark, "select_stage", lambda *args: pytest.fail("selected before refusing"))
    result = main_in_process(benchmark.main, capsys, "--teacher", TEACHER, "--targets", target, "--out", str(tmp_path / "bm"))
    assert_one_line_error(result, message)
    assert not (tmp_path / "bm").exists()


@pytest.mark.parametrize("flag, value, message", [
    ("--methods", "l1,magic", "unknown method 'magic'"),
    ("--columns", "ft1,ft15", "unknown column 'ft15'"),
    ("--stages", "prune,tune", "unknown stage 'tune'"),
    ("--targets", "0.25x,0.10", "ambiguous"),
    ("--targets", "0.25x,3x", "macs target '3x' keeps the whole network; nothing to do"),
    ("--out", "report.md", "is a file; give a folder"),
    ("--out", "run", "--out 'run' holds files that are not a benchmark's; give a new or empty folder"),
])
def test_benchmark_refuses_bad_input_before_any_stage(flag, value, message, tmp_path, capsys, monkeypatch):
    """A bad target or --out failed only at the prune stage or the first write, after the selections had run; a
    folder of other files (a compress run here) got the benchmark's report.md written over its own."""
    (tmp_path / "report.md").write_text("")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "report.md").write_text("")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(benchmark, "load_teacher", lambda args: pytest.fail("the teacher was loaded"))
    result = main_in_process(benchmark.main, capsys, "--teacher", TEACHER, "--stages", "select,prune", "--out", "bench",
                             flag, value)
    assert_one_line_error(result, message)
    assert not (tmp_path / "bench").exists()


@pytest.mark.parametrize("module, flag, value, message", [
    ("compress.train", "--lr-warmup", "1.5", "--lr-warmup 1.5 must lie in [0, 1)"),
    ("compress.benchmark", "--finetune-warmup", "1.5", "--finetune-warmup 1.5 must lie in [0, 1)"),
    ("compress.train", "--batch-size", "0", "argument --batch-size: 0 must be at least 1"),
    ("compress.train", "--epochs", "0", "argument --epochs: 0 must be a finite number above 0"),
    ("compress.train", "--epochs", "nan", "argument --epochs: nan must be a finite number above 0"),
    ("compress.train", "--lr", "-1", "argument --lr: -1 must be a finite number above 0"),
    ("compress.train", "--weight-decay", "-0.001", "argument --weight-decay: -0.001 must be a finite number of at least 0"),
    ("compress.train", "--label-smoothing", "1.5", "--label-smoothing 1.5 must lie in [0, 1)"),
    ("compress.benchmark", "--finetune-lr", "-1", "argument --finetune-lr: -1 must be a finite number above 0"),
    ("compress.benchmark", "--epoch-budget", "-3", "argument --epoch-budget: -3 must be a finite number above 0"),
    ("compress.train", "--train-limit", "-5", "argument --train-limit: -5 must be at least 1"),
    ("compress.benchmark", "--finetune-batch", "0", "argument --finetune-batch: 0 must be at least 1"),
    ("compress.benchmark", "--jobs", "0", "argument --jobs: 0 must be at least 1"),
    ("compress.benchmark", "--config", "missing.yaml", "config 'missing.yaml' does not exist"),
    ("compress.train", "--data", "synthetic", "--data synthetic has no labels"),  # it trained on labels all 0
    ("compress.benchmark", "--data", "synthetic", "--data synthetic has no labels"),
    ("compress.train", "--seed", str(2**64), "argument --seed: 18446744073709551616 must lie from 0 to 2**64 - 1"),
    ("compress.benchmark", "--seed", "-1", "argument --seed: -1 must lie from 0 to 2**64 - 1"),
    ("compress.train", "--data", "imagefolder:/data/x --data-dir /data", "and --data imagefolder:/data/x does not read it"),
])
def test_training_settings_out_of_range_are_one_line(module, flag, value, message, tmp_path):
    out = tmp_path / "out"
    args = ["--weights", TEACHER, "--out", str(out)] if module == "compress.train" else ["--teacher", TEACHER, "--out", str(out)]
    result = subprocess.run([sys.executable, "-m", module, *args, flag, *value.split()], capture_output=True, text=True)
    assert_one_line_error(result, message)
    assert not out.exists()


def test_a_fine_tune_batch_the_training_split_cannot_fill_is_refused_before_any_work(tmp_path, monkeypatch, capsys):
    from compress import pipeline

    monkeypatch.setattr(pipeline, "measure_baseline", lambda *args: pytest.fail("measured before refusing"))
    assert_one_line_error(run_main(capsys, "--target-macs", "0.5x", "--train-limit", "100", "--heldout", "16",
                                   "--out", str(tmp_path / "run")), "holds no full batch of 128; lower the batch size")
    assert not (tmp_path / "run").exists()


def test_a_teacher_that_cannot_read_the_data_is_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "compress.train", "--model", "mobilenet_v2", "--stem", "imagenet",
                             "--teacher", TEACHER, "--out", str(tmp_path / "student.pt")], capture_output=True, text=True)
    assert_one_line_error(result, "takes [1, 28, 28] input and predicts 10 classes, but data 'fashion-mnist' gives [3, 224, 224]")


def test_train_defaults_to_the_fine_tuning_recipe_for_weights_and_to_the_teachers_for_a_new_network():
    fine_tune = vars(train.parse_args(["--weights", TEACHER, "--out", "x.pt"]))
    assert {key: fine_tune[key] for key in train.FINETUNE_RECIPE} == {
        "batch_size": finetune.FINETUNE_BATCH, "lr": finetune.FINETUNE_LR, "weight_decay": finetune.FINETUNE_WEIGHT_DECAY,
        "lr_warmup": finetune.FINETUNE_WARMUP}  # what python -m compress fine-tunes with
    for argv in (["--model", "mobilenet_v2"], ["--weights", TEACHER, "--scratch"]):
        new = vars(train.parse_args([*argv, "--out", "x.pt"]))
        assert {key: new[key] for key in train.NEW_NETWORK_RECIPE} == {"batch_size": 256, "lr": 0.1, "weight_decay": 5e-4,
                                                                        "lr_warmup": 0.0}  # the shipped teacher's command
    assert train.parse_args(["--weights", TEACHER, "--lr", "0.2", "--out", "x.pt"]).lr == 0.2  # a flag wins


def test_benchmark_fine_tunes_at_the_fine_tuning_batch_and_scratch_at_the_teachers(tmp_path):
    args = benchmark.parse_args(["--teacher", TEACHER, "--out", str(tmp_path)])
    job = {"checkpoint": str(tmp_path / "l1_0.25x.pt"), "output": str(tmp_path / "out.pt"), "epochs": 1, "lr": 0.03, "kd": True}
    fine_tune = benchmark.train_command(args, {**job, "scratch": False})
    scratch = benchmark.train_command(args, {**job, "scratch": True})
    assert fine_tune[fine_tune.index("--batch-size") + 1] == str(finetune.FINETUNE_BATCH) and "--lr-warmup" in fine_tune
    assert "--batch-size" not in scratch and "--scratch" in scratch  # compress.train's default, the teacher's 256


def test_benchmark_reads_the_recipes_lists_and_flags_override_them(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"teacher": TEACHER, "methods": "gfs,l1", "targets": "0.25x,0.10x", "columns": ["ft1"]}))
    args = benchmark.parse_args(["--config", str(recipe), "--targets", "0.10x", "--out", str(tmp_path / "bench")])
    assert (args.methods, args.targets, args.columns) == (["gfs", "l1"], ["0.10x"], ["ft1"])  # a YAML list works too
    recipe.write_text(yaml.safe_dump({"teacher": TEACHER, "out": str(tmp_path / "bench")}))
    assert benchmark.parse_args(["--config", str(recipe)]).out == str(tmp_path / "bench")  # --out from the recipe
    recipe.write_text("target_macs: 150000000\n")  # a YAML number for a text setting, as the flag reads it
    assert recipes.read_recipe(recipe, cli.get_args_parser()) == {"target_macs": "150000000"}
    with pytest.raises(benchmark.UserError, match="no --out; pass the folder"):
        benchmark.parse_args(["--teacher", TEACHER])


def test_benchmark_fine_tunes_for_the_epoch_budget_and_trains_scratch_once_per_shape(tmp_path):
    (tmp_path / "models").mkdir()
    for name in ("l1_0.25x", "imitation_0.25x"):  # two methods, one shape
        shutil.copy(TEACHER, tmp_path / "models" / f"{name}.pt")
    rows = [{"checkpoint": str(tmp_path / "models" / f"{name}.pt")} for name in ("l1_0.25x", "imitation_0.25x")]
    args = benchmark.parse_args(["--teacher", TEACHER, "--columns", "ft1,ftE,scratch", "--out", str(tmp_path)])
    jobs, _ = benchmark.finetune_jobs(args, rows, tmp_path)
    budget = graph.read_checkpoint(TEACHER)["meta"]["epochs"]
    assert [(job["row"], job["column"], job["epochs"], job["scratch"]) for job in jobs] == [
        ("l1_0.25x", "ft1", 1, False), ("l1_0.25x", "ftE", budget, False), ("l1_0.25x", "scratch", budget, True),
        ("imitation_0.25x", "ft1", 1, False), ("imitation_0.25x", "ftE", budget, False)]
    assert not any(job["kd"] for job in jobs)  # ftE, like Scratch-E, trains without the teacher
    assert "--resume" in benchmark.train_command(args, jobs[1])  # an interrupted benchmark continues each run


def test_train_resume_refuses_other_weights_at_the_same_path(tmp_path, monkeypatch, capsys):
    """--resume continues only from the same starting weights: a checkpoint replaced at the same path is another run.
    (In this process, with the test-split evaluation stubbed: the refusal comes before any step.) The checkpoint says
    the epochs whole steps made of --epochs 0.1: one step of four."""
    from compress import train

    monkeypatch.setattr(finetune, "evaluate", lambda *args: {"top1": 0.5, "loss": 1.0})
    weights, out = tmp_path / "pruned.pt", tmp_path / "finetuned.pt"
    shutil.copy(TEACHER, weights)
    command = ["--weights", str(weights), "--epochs", "0.1", "--train-limit", "256", "--batch-size", "64", "--out", str(out),
               "--resume"]
    train.main(command)
    assert graph.read_checkpoint(out)["meta"]["epochs"] == 0.25
    model, arch = graph.load_checkpoint(weights)
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    graph.save_checkpoint(weights, model, arch)
    assert_one_line_error(main_in_process(train.main, capsys, *command), "different training configuration")


def test_benchmark_trains_only_the_chosen_rows_and_keeps_earlier_columns(tmp_path, monkeypatch):
    rows = []
    for target in ("0.25x", "0.10x"):
        shutil.copy(TEACHER, tmp_path / f"l1_{target}.pt")
        rows.append({"method": "l1", "target": target, "checkpoint": str(tmp_path / f"l1_{target}.pt"),
                     "teacher": io.file_digest(TEACHER)})
    io.write_json(tmp_path / "pruned.json", rows)
    trained = []
    monkeypatch.setattr(benchmark, "run_job", lambda args, job, out: trained.append((job["row"], job["column"])) or 0.5)
    common = ["--teacher", TEACHER, "--methods", "l1", "--out", str(tmp_path)]
    benchmark.finetune_stage(benchmark.parse_args([*common, "--columns", "ft1"]), tmp_path)
    benchmark.finetune_stage(benchmark.parse_args([*common, "--targets", "0.10x", "--columns", "ftE"]), tmp_path)
    assert sorted(trained) == [("l1_0.10x", "ft1"), ("l1_0.10x", "ftE"), ("l1_0.25x", "ft1")]
    results = {row["target"]: row for row in io.read_json(tmp_path / "results.json")}
    assert results["0.10x"]["ft1"] == results["0.10x"]["ftE"] == results["0.25x"]["ft1"] == 0.5 and "ftE" not in results["0.25x"]
    model, arch = graph.load_checkpoint(TEACHER)  # the prune stage ran again and replaced the 0.25x network
    model.classifier[-1].bias.data += 1.0
    graph.save_checkpoint(tmp_path / "l1_0.25x.pt", model, arch)
    benchmark.finetune_stage(benchmark.parse_args([*common, "--targets", "0.10x", "--columns", "ft1"]), tmp_path)
    results = {row["target"]: row for row in io.read_json(tmp_path / "results.json")}
    assert "ft1" not in results["0.25x"] and results["0.10x"]["ft1"] == results["0.10x"]["ftE"] == 0.5  # not the old network's


def test_benchmark_refuses_a_batch_the_split_cannot_fill_and_exits_on_a_failed_job(tmp_path, monkeypatch, capsys):
    """Every job failed in its log while the benchmark printed a table of NaN and exited 0."""
    common = ["--teacher", TEACHER, "--methods", "l1", "--targets", "0.25x", "--train-limit", "200", "--out", str(tmp_path)]
    result = main_in_process(benchmark.main, capsys, *common, "--stages", "finetune", "--columns", "ft1", "--finetune-batch", "512")
    assert_one_line_error(result, "--finetune-batch 512 is more than the 200 training images")
    result = main_in_process(benchmark.main, capsys, *common, "--stages", "finetune", "--columns", "scratch")
    assert_one_line_error(result, "Scratch-E's batch of 256 is more than the 200 training images")
    shutil.copy(TEACHER, tmp_path / "l1_0.25x.pt")
    io.write_json(tmp_path / "pruned.json", [{"method": "l1", "target": "0.25x", "checkpoint": str(tmp_path / "l1_0.25x.pt"),
                                             "teacher": io.file_digest(TEACHER)}])

    def failing(args, job, out):
        (out / "logs").mkdir(exist_ok=True)
        (out / "logs" / f"{job['row']}_{job['column']}.log").write_text("epoch 1\nerror: what went wrong\n")
        return float("nan")

    monkeypatch.setattr(benchmark, "run_job", failing)
    with pytest.raises(benchmark.UserError, match=r"1 of 1 training runs failed, the first \(l1_0.25x ft1\) with 'error: what went wrong'"):
        benchmark.finetune_stage(benchmark.parse_args([*common, "--columns", "ft1"]), tmp_path)


def test_benchmark_keeps_a_trained_column_only_if_this_call_would_train_it_the_same(tmp_path):
    pruned = tmp_path / "models" / "l1_0.25x.pt"
    pruned.parent.mkdir()
    shutil.copy(TEACHER, pruned)

    def check(*flags, checkpoint=str(pruned)):
        args = benchmark.parse_args(["--teacher", TEACHER, "--columns", "ft1", "--out", str(tmp_path), *flags])
        jobs, _ = benchmark.finetune_jobs(args, [{"checkpoint": checkpoint}], tmp_path)
        benchmark.check_trained_outputs(args, jobs)
        return args, jobs[0]

    args, job = check()
    model, arch = graph.load_checkpoint(TEACHER)
    command = "python -m compress.train " + " ".join(benchmark.train_command(args, job)[3:])
    graph.save_checkpoint(job["output"], model, arch, meta={"command": command, "digests": [io.file_digest(TEACHER)]})
    check("--data-dir", str(tmp_path))  # the same training, from another folder: kept
    check(checkpoint=os.path.relpath(pruned))  # the same file, another spelling of its path: kept
    with pytest.raises(benchmark.UserError, match="other lr; delete it"):
        check("--finetune-lr", "0.1")
    model.classifier[-1].bias.data += 1.0  # the pruned network was selected again
    graph.save_checkpoint(pruned, model, arch)
    with pytest.raises(benchmark.UserError, match=r"other train_limit, weights \(the starting or teacher weights are other"):
        check("--train-limit", "512")


def test_benchmark_reuses_a_selection_only_under_its_settings(tmp_path):
    args = benchmark.parse_args(["--teacher", TEACHER, "--out", str(tmp_path)])
    io.write_json(tmp_path / "selection_l1.json", {"groups": [], "settings": benchmark.selection_settings(args, "l1")})
    assert benchmark.read_selection(tmp_path / "selection_l1.json", args, "l1")["groups"] == []
    with pytest.raises(benchmark.UserError, match="other heldout, seed"):
        benchmark.read_selection(tmp_path / "selection_l1.json",
                                 benchmark.parse_args(["--teacher", TEACHER, "--out", str(tmp_path), "--seed", "1", "--heldout", "64"]), "l1")
    io.write_json(tmp_path / "selection_l1.json", {"groups": []})  # written before selections recorded their settings
    with pytest.raises(benchmark.UserError, match="does not record the settings it was selected under"):
        benchmark.read_selection(tmp_path / "selection_l1.json", args, "l1")


def test_report_of_latency_only_runs_plots_macs_kept_against_latency(tmp_path):
    """Runs on random weights have no accuracy: the table still compares them, the plot shows the MACs they keep."""
    from compress import report

    runs = []
    for name, milliseconds, kept_macs, onnxruntime in (("a", 2.0, 300e6, "1.31.1"), ("b", 1.5, 200e6, "1.31.1"),
                                                       ("c", 1.0, 100e6, "1.20.0")):
        run = tmp_path / name
        run.mkdir()
        io.write_json(run / "report.json", {"target": "0.5x", "method": "l1", "device": "cpu",
                                             "environment": {"cpu": "Test CPU", "onnxruntime": onnxruntime, "torch": "2.14.1"},
                                             "after": {"top1": None, "macs": kept_macs, "median_ms": milliseconds}})
        (run / "bench.csv").write_text("model,backend,batch_size\nunpruned,ort-cpu,8\npruned,ort-cpu,8\n")
        runs.append(run)
    table = report.compare_runs(runs[:2], tmp_path / "pareto")
    assert table["run"].tolist() == [str(runs[1]), str(runs[0])] and (tmp_path / "pareto" / "pareto.png").is_file()
    with pytest.raises(report.UserError, match=r"onnxruntime 1.20.0.*onnxruntime 1.31.1|onnxruntime 1.31.1.*onnxruntime 1.20.0"):
        report.compare_runs(runs)  # another ONNX Runtime release: another latency axis
    (runs[1] / "bench.csv").write_text("model,backend,batch_size,protocol\nunpruned,ort-cpu,8,2\npruned,ort-cpu,8,2\n")
    with pytest.raises(report.UserError, match="protocol 2"):
        report.compare_runs(runs[:2])  # timed before ONNX Runtime's input stayed on the device: another latency axis


def test_the_report_names_the_groups_cut_under_the_uniform_ratio_to_their_floor():
    """ResNet-50's latency-only run kept 61.9% of its MACs with its stem and two residual streams at 8 channels: the
    report says which groups went down to the floor, which a MACs count does not show."""
    from compress import report

    allocation = {"uniform_ratio": 0.383, "uniform_ms": 2.138, "min_share": 0.0,
                  "widths": {"conv1": 8, "layer1.0.conv3": 8, "layer1.0.conv1": 64, "layer3.0.conv3": 512},
                  "group_floors": {"conv1": 8, "layer1.0.conv3": 8, "layer1.0.conv1": 8, "layer3.0.conv3": 8}}
    full = {"conv1": 64, "layer1.0.conv3": 256, "layer1.0.conv1": 64, "layer3.0.conv3": 1024}
    line = report._uniform_line(allocation, full)
    assert "cut to that floor: conv1 64 -> 8, layer1.0.conv3 256 -> 8; " in line
    assert "layer1.0.conv1" not in line and "layer3.0.conv3" not in line
    at_uniform = {**allocation, "min_share": 1.0}  # the floor is the uniform ratio itself: nothing went under it
    assert "floor" not in report._uniform_line(at_uniform, full)
    past = report._uniform_line({**at_uniform, "ratio_past_floor": 0.375}, full)  # the floor re-timed over the target
    assert "re-timed over the target, and the choice went on to the aligned ratio 0.375" in past


def test_a_macs_target_met_by_a_slower_network_says_so():
    """Half the MACs with its channel counts as they fell ran at 0.58x the unpruned speed on ort-cpu
    (reports/macs_alignment_cpu/): the report must not leave that to a reader of the speedup column."""
    from compress import report

    line = report._slower_line(0.58, {"align": 1, "target": 3.6e7}, "ort-cpu")
    assert "slower than the unpruned one on ort-cpu" in line and "multiple 1" in line and "--target-latency" in line
    assert report._slower_line(1.7, {"align": 8}, "ort-cpu") == ""
    assert report._slower_line(0.9, {"align": 8, "target_ms": 2.0}, "ort-cpu") == ""  # a latency verdict says it


def test_a_redone_stage_removes_what_later_stages_and_the_report_made(tmp_path):
    """A fine-tune's resume state belongs to the network it started from: redoing the rebuild removes it (kept, the
    resumed fine-tune refused it as another training configuration), while the fine-tune stage itself resumes from it.
    A redone export interrupted before the bench left the old bench.csv and report.md describing a model now gone."""
    from compress import pipeline

    made = ("model.pt", "model.pt.state", "finetune.json", "model.onnx", "bench.json", "bench.csv", "compare.json",
            "l1_model.pt.state", "tp_l1_over_model.pt.state", "l1_model.pt", "report.md", "report.json", "widths.png")
    for name in made:
        (tmp_path / name).write_text("{}")
    pipeline.stage(tmp_path / "export.json", lambda: {"onnx": {"passed": True}})  # the export's own files stay
    left = {path.name for path in tmp_path.iterdir()}
    assert left == {"model.pt", "model.pt.state", "finetune.json", "model.onnx", "export.json"}
    (tmp_path / "finetune.json").unlink()
    pipeline.stage(tmp_path / "finetune.json", lambda: {"top1": 0.5})  # an interrupted fine-tune: its state stays
    assert (tmp_path / "model.pt.state").exists() and not (tmp_path / "model.onnx").exists()
    pipeline.stage(tmp_path / "rebuilt.pt", lambda: tmp_path / "rebuilt.pt", kind="file")
    assert not {"model.pt", "model.pt.state", "finetune.json"} & {path.name for path in tmp_path.iterdir()}
    # A stage whose artefact is there but not a file it always writes beside it (deleted by hand) runs again.
    tuned = {"epochs": 0, "kd": True, "top1": 0.5}
    (tmp_path / "finetune.json").write_text("{}")
    assert pipeline.stage(tmp_path / "finetune.json", lambda: tuned) == tuned
    (tmp_path / "model.pt").write_text("")
    assert pipeline.stage(tmp_path / "finetune.json", lambda: pytest.fail("done, with model.pt")) == tuned


def test_benchmark_stages_run_apart_and_report_the_methods_asked_for(tmp_path, capsys, monkeypatch):
    """select, then prune and report in a second call (as the README runs them on a GPU and a CPU): the report has the
    row of the target's MACs, with the teacher's top-1 and the real test split's one-shot accuracies. A report of other
    methods than were pruned left them out silently, and recorded the command as if it had them."""
    out = tmp_path / "bench"
    common = ["--teacher", TEACHER, "--targets", "0.5x", "--speed-steps", "0", "--heldout", "32", "--train-limit", "1024",
              "--device", "cpu", "--out", str(out)]
    assert_one_line_error(main_in_process(benchmark.main, capsys, *common, "--stages", "report"), "no pruned networks in")
    assert not out.exists()  # refused before writing anything: no empty folder either
    assert main_in_process(benchmark.main, capsys, *common, "--methods", "l1,random", "--stages", "select").returncode == 0
    assert sorted(path.name for path in out.iterdir()) == ["selection_l1.json", "selection_random.json"]
    assert main_in_process(benchmark.main, capsys, *common, "--methods", "l1", "--stages", "prune,report").returncode == 0
    table = pd.read_csv(out / "report.csv")
    assert list(table["method"]) == ["l1"] and list(table["target"]) == ["0.5x"]
    assert 0.45 <= table["macs_kept"][0] <= 0.5 and 10 <= table["one_shot_bn"][0] <= 100
    teacher_top1 = graph.read_checkpoint(TEACHER)["meta"]["top1"]
    assert f"test top-1 {100 * teacher_top1:.2f}%" in (out / "report.md").read_text()
    result = main_in_process(benchmark.main, capsys, *common, "--methods", "l1,random", "--stages", "report")
    assert_one_line_error(result, "no pruned network of random at 0.5x")  # selected, never pruned
    assert list(pd.read_csv(out / "report.csv")["method"]) == ["l1"]
    assert main_in_process(benchmark.main, capsys, *common, "--methods", "random", "--stages", "prune").returncode == 0
    assert main_in_process(benchmark.main, capsys, *common, "--methods", "l1,random", "--stages", "report").returncode == 0
    assert list(pd.read_csv(out / "report.csv")["method"]) == ["l1", "random"]  # pruned by two calls
    # What was trained from a row's network goes when a prune stage replaces that network, and only then.
    trained = [out / "finetuned" / "random_0.5x_ft1.pt.state", out / "finetuned" / "random_0.5x_scratch.pt"]
    trained[0].parent.mkdir()
    for path in trained:
        path.write_text("trained from the network pruned before")
    assert main_in_process(benchmark.main, capsys, *common, "--methods", "random", "--stages", "prune").returncode == 0
    assert all(path.exists() for path in trained)  # the same network again
    (out / "models" / "random_0.5x.pt").write_text("another network")
    assert main_in_process(benchmark.main, capsys, *common, "--methods", "random", "--stages", "prune").returncode == 0
    assert not any(path.exists() for path in trained)
    # Pruned from one directory with a relative --out, reported from another: the rows name their networks from --out.
    monkeypatch.chdir(tmp_path)
    assert main_in_process(benchmark.main, capsys, *common[:-1], "bench", "--methods", "l1", "--stages", "prune").returncode == 0
    monkeypatch.chdir(out / "models")
    assert main_in_process(benchmark.main, capsys, *common, "--methods", "l1,random", "--stages", "report").returncode == 0


def test_benchmark_reports_the_training_columns_of_the_networks_it_has(tmp_path, capsys):
    """results.json's columns join the rows of pruned.json, only where they were trained from the network a row has
    now: a prune stage run since the fine-tunes replaced it."""
    rows = []
    for method in ("l1", "random"):
        shutil.copy(TEACHER, tmp_path / f"{method}_0.25x.pt")
        rows.append({"method": method, "target": "0.25x", "macs_kept": 0.25, "one_shot": 0.5, "one_shot_bn": 0.6,
                     "selection_seconds": 1.0, "checkpoint": str(tmp_path / f"{method}_0.25x.pt"),
                     "teacher": io.file_digest(TEACHER)})
    io.write_json(tmp_path / "pruned.json", rows)
    io.write_json(tmp_path / "results.json", [{**rows[0], "ft1": 0.8, "network": io.file_digest(rows[0]["checkpoint"])},
                                              {**rows[1], "ft1": 0.7, "network": "the network pruned before"}])
    result = main_in_process(benchmark.main, capsys, "--teacher", TEACHER, "--methods", "random,l1", "--targets", "0.25x",
                             "--stages", "report", "--out", str(tmp_path))
    assert result.returncode == 0
    table = pd.read_csv(tmp_path / "report.csv")
    assert list(table["method"]) == ["random", "l1"] and table["ft1"].isna().tolist() == [True, False]
    assert table["ft1"][1] == 80.0
    # A row pruned from another teacher (--teacher switched between calls on one --out) is refused, not reported as this one's.
    io.write_json(tmp_path / "pruned.json", [rows[0], {**rows[1], "teacher": "another teacher's digest"}])
    result = main_in_process(benchmark.main, capsys, "--teacher", TEACHER, "--methods", "random,l1", "--targets", "0.25x",
                             "--stages", "report", "--out", str(tmp_path))
    assert_one_line_error(result, "the network of random at 0.25x in")
