"""The main job, one stage after another; each reads what earlier stages wrote to the run directory.

unpruned (ImageNet-shape weights made a checkpoint) -> load -> baseline -> reach -> select -> allocate -> select at
widths -> rebuild -> fine-tune -> export -> bench -> compare -> report

A stage whose artefact exists is skipped, so an interrupted run resumes where it stopped; a stage that runs
removes the later stages' files and the report, so deleting a stage's file redoes it and everything after it. The stages before
the allocation do not depend on the target, so a resumed run with a new target keeps them (``forget_target``).
"""
import copy
import fnmatch
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from bench import latency
from compress import budget, data as datasets, finetune, graph, io, macs, report, timing, zoo
from compress.errors import UserError
from compress.select import (SEQUENTIAL_METHODS, apply_selection, baselines, order_channels, select_at_widths_on_data,
                             select_channels)
from export import cli as export_cli
from export.tensorrt import TIMING_CACHE, deployment_profile

BASELINE_KEY = {"latency": "latency_ms", "macs": "macs", "params": "params"}
RANDOM_WEIGHTS = "random"  # config["weights"] for latency-only runs (see cli.py)
STAGE_ARTEFACTS = ("unpruned.pt", "baseline.json", "selection.json", "allocation.json", "selection_at_widths.json",
                   "rebuilt.pt", "finetune.json", "export.json", "bench.json", "compare.json")  # in the order run() makes them
# What no target decides: kept when a resumed run asks for another target, and after a target out of reach.
TARGET_FREE = ("config.yaml", "unpruned.pt", "baseline.json", "selection.json", "latency_cache.json", TIMING_CACHE)
# What neither the target nor the machine that times decides: kept when a resumed run times on another machine or release.
MACHINE_FREE = ("config.yaml", "unpruned.pt", "selection.json")
# The other files a stage writes (glob patterns), removed with its artefact when an earlier stage runs again: made from
# what that stage replaces. Among them what a stage's fine-tunes resume from while it runs (the *.state files): were
# they kept, the next fine-tune would end in finetune.train's refusal of another network's state, not start afresh.
STAGE_FILES = {"finetune.json": ("model.pt", "model.pt.state"), "export.json": ("model.onnx", "model_fp16.onnx", "model.engine"),
               "bench.json": ("bench.csv",), "compare.json": ("*l1_*rebuilt.pt", "*l1_*model.pt", "*_model.pt.state")}
# The files a stage always writes beside its artefact: it is done only where they are there too (one deleted by hand is
# made again, with what the stages after it made from it).
STAGE_OUTPUTS = {"selection_at_widths.json": ("rebuilt.pt",), "finetune.json": ("model.pt",), "export.json": ("model.onnx",),
                 "bench.json": ("bench.csv",)}
# Stages run after an earlier one but not made from it: the selection reads the network and the data, not the baseline,
# so timing the baseline again (on another machine, or after its file was deleted) keeps the curves.
NOT_MADE_FROM = {"baseline.json": ("selection.json",)}
# The keys of each JSON stage that the stages after it and the report read: a file without them (edited, or another
# program's) is refused in one line on --resume instead of failing later in a KeyError.
STAGE_KEYS = {"baseline.json": ("top1", "loss", "macs", "params", "latency_ms"), "selection.json": ("method", "loss", "seconds", "groups"),
              "allocation.json": ("widths", "align"), "selection_at_widths.json": ("method", "seconds", "groups"),
              "finetune.json": ("epochs", "kd", "top1"), "export.json": ("parity_fp32",), "bench.json": ("rows", "environment"),
              "compare.json": ("baselines",)}
RUN_CHECKPOINTS = ("unpruned.pt", "rebuilt.pt", "model.pt")  # the networks a run writes and reads back
# What report.write makes from every stage's artefacts: stale as soon as any stage runs again.
REPORT_FILES = ("report.md", "report.json", "accuracy_vs_latency.png", "widths.png")
# Every file a run writes in its directory (glob patterns): what a new target or --overwrite removes. Anything else there,
# such as a checkpoint fine-tuned further from model.pt and its export folder, is the user's and stays.
RUN_FILES = (*STAGE_ARTEFACTS, *TARGET_FREE, *(pattern for patterns in STAGE_FILES.values() for pattern in patterns),
             *REPORT_FILES)


def run(config):
    """Everything ``python -m compress`` does, for a resolved config dict."""
    out = Path(config["out"])
    weights = config["weights"]
    if weights == RANDOM_WEIGHTS or graph.checkpoint_arch(weights) is None:  # made a toolkit checkpoint once, in the run
        weights = stage(out / "unpruned.pt", lambda: unpruned_network(config, out / "unpruned.pt"), kind="file")
    model, arch, data = load(config, weights)
    baseline = stage(out / "baseline.json", lambda: measure_baseline(config, model, arch, data, out))
    if not (out / "allocation.json").exists():  # an allocation once made has met its floor
        check_reach(config, model, arch, baseline, out)
    selection = stage(out / "selection.json", lambda: select(config, model, arch, data))
    allocation = stage(out / "allocation.json", lambda: allocate(config, model, arch, selection, baseline, out))
    if config["method"] in SEQUENTIAL_METHODS and config["at_widths"]:  # selects and rebuilds rebuilt.pt in one pass
        selection = stage(out / "selection_at_widths.json",
                          lambda: select_at_widths(config, model, arch, data, selection, allocation["widths"], out / "rebuilt.pt"))
    else:
        stage(out / "rebuilt.pt", lambda: rebuild(config, model, arch, data, selection, allocation["widths"], out / "rebuilt.pt"),
              kind="file")
    tuned = stage(out / "finetune.json", lambda: fine_tune(config, model, data, out / "rebuilt.pt", out / "model.pt"))
    exported = stage(out / "export.json", lambda: export(config, out))
    export_cli.exit_on_parity_failure(exported, out)  # also on --resume: a failed check is never built upon
    bench = stage(out / "bench.json", lambda: bench_final(config, weights, out))
    compare = None
    if config["compare_l1"]:  # at the run's channel multiple: --align where given, else measured (latency) or 8
        compare = stage(out / "compare.json", lambda: compare_l1(config, model, arch, data, bench, allocation["align"], out))
    return report.write(out, config, baseline, selection, allocation, tuned, exported, bench, compare)


def stage(path, make, kind="json"):
    """Return the stage's artefact, computing and writing it (atomically) only if it, or a file the stage writes beside
    it (``STAGE_OUTPUTS``), is missing.

    A stage that runs first removes the files of the stages after it made from it (all but ``NOT_MADE_FROM``) and the
    report: they were made from what this stage is about to replace, so they are made again instead of read back, and
    an interrupted run leaves no report of a model no longer there.
    """
    if path.exists() and all((path.parent / name).exists() for name in STAGE_OUTPUTS.get(path.name, ())):
        return read_stage(path) if kind == "json" else path
    index = STAGE_ARTEFACTS.index(path.name)
    later = [name for name in STAGE_ARTEFACTS[index + 1:] if name not in NOT_MADE_FROM.get(path.name, ())]
    made_later = [pattern for name in later for pattern in (name, *STAGE_FILES.get(name, ()))]
    remove_run_files(path.parent, patterns=(*made_later, *REPORT_FILES))
    result = make()
    if kind == "json":
        io.write_json(path, result)
    return result


def read_stage(path):
    """A JSON stage file read back, refused in one line where it lacks what the later stages read (``STAGE_KEYS``)."""
    result = io.read_json(path)
    missing = [key for key in STAGE_KEYS[path.name] if key not in result] if isinstance(result, dict) else None
    if missing is None or missing:
        problem = "it is not a JSON object" if missing is None else f"it lacks '{missing[0]}'"
        raise UserError(f"'{path}' is not the {path.name} this toolkit writes ({problem}); delete it and run the same "
                        "command with --resume to make it again")
    return result


def unpruned_network(config, path):
    """The zoo network at ImageNet shape as a toolkit checkpoint: with random weights for latency-only runs, or with a
    bare state_dict's or a torchvision weights name's (e.g. ResNet50_Weights.IMAGENET1K_V2, from the local cache)."""
    name, side, weights = config["model"], config["input_size"], config["weights"]
    if weights == RANDOM_WEIGHTS:
        model, classes, source = zoo.build_model(name), 1000, "random initialisation (latency only)"
    else:
        state_dict = zoo.read_state_dict(weights)
        matrices = [tensor for tensor in state_dict.values() if tensor.dim() == 2]
        if not matrices:
            raise UserError(f"weights '{weights}' hold no classifier (no 2-D tensor), so they are not a {name}'s; "
                            "pass its state_dict")
        classes = matrices[-1].shape[0]  # the classifier's rows
        model = zoo.build_model(name, classes, 3, "imagenet")
        zoo.load_state_dict_strict(model, state_dict, source=f"weights '{weights}'")
        source = str(weights)
    arch = graph.make_arch(name, classes, 3, "imagenet", (3, side, side))
    graph.save_checkpoint(path, model, arch, meta={"weights": source})
    return path


def load_checkpoint(path, out):
    """``graph.load_checkpoint``, where a checkpoint this run wrote in ``out`` and damaged since says how to make it
    again (not, as for a --weights file, which file to pass instead)."""
    try:
        return graph.load_checkpoint(path)
    except UserError:
        if out is None or Path(path).name not in RUN_CHECKPOINTS or Path(path).parent.resolve() != Path(out).resolve():
            raise
        raise UserError(f"'{path}', which this run wrote, cannot be read any more; delete it and run the same command "
                        "with --resume to make it again") from None


def load(config, weights):
    model, arch = load_checkpoint(weights, config.get("out"))
    # Synthetic tensors take the network's input shape, and ImageNet-stem images its side (--input-size); other data keeps
    # its own shape, so a network trained on other images is refused below rather than fed resized Fashion-MNIST.
    shaped = config["data"] == "synthetic" or arch["stem"] == "imagenet"
    data = datasets.load_data(config["data"], config.get("data_dir"), stem=arch["stem"], batch_size=config["finetune_batch"],
                              input_size=arch["input_size"] if shaped else None, train_limit=config.get("train_limit"))
    datasets.check_fits(arch, data, f"--weights '{config['weights']}'")
    if config["weights"] != RANDOM_WEIGHTS:  # the selection's, refused before the baseline is measured
        datasets.check_heldout(data, config["heldout"])
    if len(data.train) == 0:  # the fine-tune's and BN re-estimation's batches: refused now, not after the selection
        raise UserError(finetune.no_full_batch(data))
    return model.to(config["device"]), arch, data


def measure_baseline(config, model, arch, data, out):
    input_size = tuple(arch["input_size"])
    model_macs, params = macs.count_macs_params(model, input_size)
    cheap = {"macs": model_macs, "params": params}
    if config["target_kind"] != "latency":  # a counted target fails before anything is timed
        budget.resolve_target(config["target"], config["target_kind"], cheap[BASELINE_KEY[config["target_kind"]]])
    cheap["latency_ms"] = timing.time_model(config, model, input_size, out / "latency_cache.json", key={"widths": "full"})["median_ms"]
    budget.resolve_target(config["target"], config["target_kind"], cheap[BASELINE_KEY[config["target_kind"]]])  # before evaluating
    metrics = finetune.evaluate(model, data, config["device"]) if data.has_labels else {"top1": None, "loss": None}
    return {"top1": metrics["top1"], "loss": metrics["loss"], **cheap}


def check_reach(config, model, arch, baseline, out):
    """Stop before the selection, the costly stage, where no allocation can meet the target: the narrowest network
    pruning allows, every group at the finest channel multiple the run may use, counted for MACs and params and
    measured for latency (cached like every timing). The allocation checks its own floor again, at its multiple."""
    input_size, kind = tuple(arch["input_size"]), config["target_kind"]
    target = budget.resolve_target(config["target"], kind, baseline[BASELINE_KEY[kind]])
    cpu_model = copy.deepcopy(model).cpu()
    groups = graph.list_groups(cpu_model, input_size)
    full = {group.id: group.width for group in groups}
    align = config["align"] or (min(budget.ALIGN_CANDIDATES) if kind == "latency" else budget.MACS_ALIGN)
    narrowest = budget.narrowest_widths(full, full, align)
    if kind in ("macs", "params"):
        smallest = macs.width_cost_model(cpu_model, input_size, groups)(narrowest)[0 if kind == "macs" else 1]
        return budget.check_cost_reach(target, smallest, kind, align)
    with timing.latency_against_unpruned(config, cpu_model, input_size, baseline["latency_ms"], out / "latency_cache.json") as measure:
        floor_ms = timing.time_widths(measure, arch, [narrowest])[0]  # the allocation's floor at this multiple reads it back
    budget.check_floor(target, floor_ms, baseline["latency_ms"], align)


def select(config, model, arch, data):
    input_size = tuple(arch["input_size"])
    if config["weights"] == RANDOM_WEIGHTS:  # no loss signal in random weights: allocation keeps MACs per ms instead
        cpu_model = copy.deepcopy(model).cpu()
        return budget.capacity_curves(cpu_model, input_size, order_channels(cpu_model, input_size, config["method"], config["seed"]))
    draw, heldout = datasets.selection_batches(data, config["select_batch"], config["heldout"], config["device"], config["seed"])
    return select_channels(model, input_size, config["method"], draw, heldout, loss=config["loss"],
                           candidates=config["candidates"], tolerance=config["tolerance"],
                           max_keep_ratio=config["max_keep_ratio"], seed=config["seed"])


def allocate(config, model, arch, selection, baseline, out):
    """Widths per group meeting the target: exact counts for MACs/params, measurements for latency."""
    input_size = tuple(arch["input_size"])
    kind, text = config["target_kind"], config["target"]
    cpu_model = copy.deepcopy(model).cpu()  # the groups and cost model are traced on the CPU; the caller's model stays put
    if kind in ("macs", "params"):
        target = budget.resolve_target(text, kind, baseline[BASELINE_KEY[kind]])
        widths, details = budget.allocate(cpu_model, input_size, selection, target, cost=kind,
                                          align=config["align"] or budget.MACS_ALIGN, min_share=config["min_share"])
        return {"widths": widths, **details}
    target_ms = budget.resolve_target(text, "latency", baseline["latency_ms"])
    relative = budget.parse_target(text, "latency")[0] == "relative"

    def confirm_widths(widths):
        """The chosen widths re-timed as the final bench will time them; a relative target is a speedup, so the
        unpruned network is timed beside them and the result scaled to the run's starting reference."""
        unpruned, pruned = timing.time_back_to_back(config, [cpu_model, graph.build_from_arch({**arch, "widths": widths})], input_size)
        return pruned["median_ms"] * baseline["latency_ms"] / unpruned["median_ms"] if relative else pruned["median_ms"]

    with timing.latency_against_unpruned(config, cpu_model, input_size, baseline["latency_ms"], out / "latency_cache.json") as measure:
        def measure_widths(widths):
            return timing.time_widths(measure, arch, [widths])[0]

        # The multiple decides every later cut, and is measured once: as many rounds as the final bench.
        align, alignment = ((config["align"], {}) if config["align"] else budget.best_alignment(
            cpu_model, input_size, selection, lambda networks: timing.time_widths(measure, arch, networks, config["bench_rounds"]),
            target_ms))
        bar = tqdm(desc="latency slopes", total=len(selection["groups"]), disable=None, leave=False)
        margin = 0.05  # aim at the window's middle: the final bench, minutes later, drifts either way (reports/demo_cpu/stop8_outside)
        widths, details = budget.allocate_latency(cpu_model, input_size, selection, target_ms, measure_widths, align=align,
                                                  margin=margin, min_share=config["min_share"], confirm_ms=confirm_widths,
                                                  progress=bar.update)
        bar.close()
    low_ms, high_ms = (bound * target_ms for bound in budget.LATENCY_WINDOW)
    if not low_ms <= details["measured_ms"] <= high_ms:  # the confirmations ran out; the final bench will judge the model
        print(f"warning: the chosen widths re-timed at {details['measured_ms']:.3f} ms, outside the window "
              f"[{low_ms:.3f}, {high_ms:.3f}] ms; going on with them", file=sys.stderr)
    return {"widths": widths, **details, "align_ms_saved_per_mmac": alignment.get("ms_saved_per_mmac"),
            "align_floor_ms": alignment.get("floor_ms")}


def select_at_widths(config, model, arch, data, curves, widths, path):
    """Selection again at the allocated widths, groups input to output on the network the earlier cuts left; the
    pruned network it returns is written to ``path`` (imitation's re-fitted weights are not a function of the order).

    The curves that allocation read were measured one group at a time on the unpruned network; this
    pass picks the channels that work together (see ``compress.select.select_at_widths``).
    """
    selection, pruned = select_at_widths_on_data(
        model, tuple(arch["input_size"]), widths, data, device=config["device"], select_batch=config["select_batch"],
        heldout=config["heldout"], recal_batches=config["recal_batches"], seed=config["seed"], method=config["method"],
        loss=config["loss"], candidates=config["candidates"], steps=config["steps"])
    graph.save_pruned(path, pruned.cpu(), arch)
    return {**selection, "curves_seconds": curves["seconds"]}


def rebuild(config, model, arch, data, selection, widths, path):
    """The physically pruned network; a fresh batch of training images re-fits the groups imitation chose to re-fit."""
    refits = any(entry["scale"] == "refit" for entry in selection["groups"])
    images = datasets.heldout_batch(data, config["select_batch"], "cpu", seed=(config["seed"] + 1) % 2**64)[0] if refits else None
    pruned = apply_selection(copy.deepcopy(model).cpu(), tuple(arch["input_size"]), selection, widths, images)
    graph.save_pruned(path, pruned, arch)
    return path


def fine_tune(config, teacher, data, rebuilt_path, model_path):
    """One-shot accuracy where the run asks for it (``one_shot_eval``; BN re-estimated on a copy, so fine-tuning starts
    from the rebuilt network either way), then fine-tuning with KD from the unpruned network by default, and the
    shipped network's BN statistics re-estimated, fine-tuned or not (a cut network's are the unpruned one's)."""
    model, arch = load_checkpoint(rebuilt_path, rebuilt_path.parent)
    device = config["device"]
    result = {"epochs": config["finetune_epochs"], "kd": config["kd"]}
    # The one-shot BN re-estimation's batches and the shuffle order (without a warm-up, one epoch at 0.10x MACs spread
    # 12 points by shuffle seed) are the same every run, and the one-shot evaluation does not change the order.
    torch.manual_seed(config["seed"])
    if data.has_labels and config["one_shot_eval"]:
        one_shot = finetune.recalibrate_bn(copy.deepcopy(model), data, device, batches=config["bn_batches"])
        result["one_shot_top1"] = finetune.evaluate(one_shot, data, device)["top1"]
        torch.manual_seed(config["seed"])
    if config["finetune_epochs"] > 0 and data.has_labels:
        started = time.perf_counter()
        result["history"] = finetune.train(model, data, epochs=config["finetune_epochs"], lr=config["finetune_lr"],
                                           warmup=config["finetune_warmup"], weight_decay=finetune.FINETUNE_WEIGHT_DECAY,
                                           teacher=teacher if config["kd"] else None, device=device,
                                           checkpoint=str(model_path) + ".state", resume=True,
                                           settings={"rebuilt": io.file_digest(rebuilt_path)})
        result["seconds"] = time.perf_counter() - started
        Path(str(model_path) + ".state").unlink(missing_ok=True)
    if data.has_labels:  # synthetic input's statistics would be the noise's
        finetune.recalibrate_bn(model, data, device, batches=config["bn_batches"])
    result["top1"] = finetune.evaluate(model, data, device)["top1"] if data.has_labels else None
    graph.save_checkpoint(model_path, model.float().cpu(), arch, meta={"top1": result["top1"]})
    return result


def export(config, out):
    """model.onnx, parity-checked in ONNX Runtime on the run's test images; model.engine for the tensorrt backend (from
    model_fp16.onnx at fp16)."""
    smallest, optimum, largest = deployment_profile(config["batch_size"])
    on_tensorrt = config["backend"] == "tensorrt"
    return export_cli.run(out, tensorrt=on_tensorrt, fp16=on_tensorrt and config["precision"] == "fp16",
                          min_batch=smallest, opt_batch=optimum, max_batch=largest)


def bench_final(config, weights, out):
    """The pruned model as it ships (its model.onnx or model.engine on those backends) against the unpruned one
    (exported the same way), same backend and settings, measured now in interleaved rounds."""
    pruned, arch = load_checkpoint(out / "model.pt", out)
    original, _ = load_checkpoint(weights, out)
    input_size = tuple(arch["input_size"])
    shipped = latency.shipped_file(out, config["backend"], config["precision"], config["batch_size"]) or pruned
    timings = timing.time_back_to_back(config, [original, shipped], input_size)
    rows = []
    for name, model, subject, stats in zip(("unpruned", "pruned"), (original, pruned), (original, shipped), timings):
        model_macs, params = macs.count_macs_params(model, input_size)
        rows.append({"model": name, "timed": latency.timed_as(subject, config["backend"]), "macs": model_macs, "params": params,
                     **stats})
    io.write_text(out / "bench.csv", report.rows_to_csv(rows))
    return {"rows": rows, "environment": latency.environment()}


def compare_l1(config, teacher, arch, data, bench, align, out):
    """The L1 baselines at the pruned model's measured latency, each fine-tuned with the same budget.

    Uniform L1 keeps one ratio of every group; Torch-Pruning's own L1 pruner also rounds channel counts to the run's
    channel multiple (measured as the backend's best for a latency target, unless ``--align`` gives it). Each ratio is
    bisected on latency measured in turns with the unpruned network and scaled to the final bench's
    (``timing.latency_against_unpruned``). Rounding can make a
    baseline jump over the window (round_to 32 went from 5.29 to 7.15 ms between two adjacent ratios,
    reports/equal_latency_cpu/run_0.5x_stop17/); then the nearest ratio measured over the latency is fine-tuned too,
    so the two rows bracket it.
    """
    input_size = tuple(arch["input_size"])
    medians = {row["model"]: row["median_ms"] for row in bench["rows"]}
    unpruned_ms, pruned_ms = medians["unpruned"], medians["pruned"]
    cpu_teacher = copy.deepcopy(teacher).cpu()
    builders = {
        "uniform L1": ("l1", lambda ratio: baselines.uniform_l1_network(cpu_teacher, input_size, ratio)),
        f"Torch-Pruning L1, round_to {align}": ("tp_l1", lambda ratio: baselines.torch_pruning_l1_network(cpu_teacher, input_size,
                                                                                                       ratio, align)),
    }
    results = []
    with timing.latency_against_unpruned(config, cpu_teacher, input_size, unpruned_ms, out / "latency_cache.json") as measure:
        for name, (tag, build) in builders.items():
            tried = {}

            def measure_ratio(ratio):
                key = {f"{tag}_ratio": round(ratio, 6), "align": align if tag == "tp_l1" else 1}
                tried[ratio] = measure(lambda: [build(ratio)], key=key)[0]
                return tried[ratio]

            ratio, measured = budget.bisect_ratio(measure_ratio, pruned_ms, budget.BISECT_STEPS, low=0.05)
            points = [] if ratio is None else [(ratio, measured, "")]
            over = [r for r, ms in tried.items() if ms > pruned_ms]
            if over and (ratio is None or measured < budget.LATENCY_WINDOW[0] * pruned_ms):
                nearest = min(over)
                points.append((nearest, tried[nearest], "_over"))
            if not points:
                results.append({"name": name, "skipped": "no ratio reached the pruned model's latency"})
            for ratio, measured, suffix in points:
                network = build(ratio)
                graph.save_pruned(out / f"{tag}{suffix}_rebuilt.pt", network, arch)
                tuned = fine_tune(config, teacher, data, out / f"{tag}{suffix}_rebuilt.pt", out / f"{tag}{suffix}_model.pt")
                results.append({"name": name, "ratio": ratio, "measured_ms": measured,
                                "macs": macs.count_macs_params(network, input_size)[0], **tuned})
    return {"baselines": results}


def is_run_file(path):
    """Whether ``path`` is named as a file a run writes in its directory (``RUN_FILES``)."""
    return any(fnmatch.fnmatch(Path(path).name, pattern) for pattern in RUN_FILES)


def forget_target(out):
    """Remove what an earlier target made in the run directory ``out``, keeping ``TARGET_FREE``: the next run
    allocates for its own target on the same baseline, selection curves and cached timings."""
    remove_run_files(out, keep=TARGET_FREE)


def forget_timings(out):
    """Remove every timing in the run directory ``out`` and what was made from them, keeping ``MACHINE_FREE``: on
    another machine or release of the backend's software, the baseline and every probe are timed again."""
    remove_run_files(out, keep=MACHINE_FREE)


def remove_run_files(out, keep=(), patterns=RUN_FILES):
    """Remove the files a run wrote in ``out`` (``patterns``, by default all of ``RUN_FILES``) but those named in
    ``keep``; nothing else in it."""
    for pattern in patterns:
        for path in out.glob(pattern):
            if path.name not in keep and path.is_file():
                path.unlink()
