"""Run reports: report.md / report.json and plots from a run directory's own files."""
import datetime
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from bench import latency
from compress import budget, io
from compress.errors import UserError


def rows_to_csv(rows):
    return pd.DataFrame(rows).to_csv(index=False)


def percent(value, missing="n/a"):
    """A top-1 as a percentage with two decimals; ``missing`` where there is none (no labels, not measured)."""
    return missing if value is None else f"{100 * value:.2f}%"


def write(out, config, baseline, selection, allocation, tuned, exported, bench, compare):
    """report.md, report.json and the plots; returns the summary dict."""
    out = Path(out)
    unpruned, pruned = (next(r for r in bench["rows"] if r["model"] == name) for name in ("unpruned", "pruned"))
    summary = {
        "command": config["command"], "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": latency.timed_on(bench["environment"], config["backend"]), "environment": bench["environment"],
        "target": f"{config['target_kind']} {config['target']}", "method": config["method"],
        "before": {"top1": baseline["top1"], "macs": unpruned["macs"], "params": unpruned["params"],
                   "median_ms": unpruned["median_ms"], "p90_ms": unpruned["p90_ms"]},
        "after": {"top1": tuned["top1"], "one_shot_top1": tuned.get("one_shot_top1"), "macs": pruned["macs"],
                  "params": pruned["params"], "median_ms": pruned["median_ms"], "p90_ms": pruned["p90_ms"],
                  "timed": pruned.get("timed")},
        "speedup": unpruned["median_ms"] / pruned["median_ms"],
        "macs_kept": pruned["macs"] / unpruned["macs"], "params_kept": pruned["params"] / unpruned["params"],
        "selection_seconds": selection["seconds"] + selection.get("curves_seconds", 0.0),
        "allocation": {k: v for k, v in allocation.items() if k != "widths"},
        "parity": exported["parity_fp32"],
        "baselines_at_equal_latency": (compare or {}).get("baselines", []),
    }
    settings = f"{pruned['backend']}, batch {pruned['batch_size']}, {pruned['precision']}" + (
        f", {pruned['threads']} thread{'s' if pruned['threads'] != 1 else ''}" if pruned.get("threads") else "")
    loss = f"{selection['loss']} loss" if selection["loss"] else "no loss: random weights, curves of MACs lost"
    lines = [
        f"# Compression report: {config['model']} on {config['data']}", "",
        f"- command: `{config['command']}`", f"- device: {summary['device']}", f"- date: {summary['date']}",
        f"- target: {summary['target']}; latency measured on {settings}"
        + (f", the pruned network as its shipped {pruned['timed']}" if pruned.get("timed", "").startswith("model.") else ""),
        f"- method: {config['method']} ({loss}), {_tuning(config, tuned, baseline)}", "",
        "| | top-1 | MACs (M) | params (M) | median ms | p90 ms |", "|---|---|---|---|---|---|",
        f"| before | {percent(baseline['top1'])} | {unpruned['macs'] / 1e6:.1f} | {unpruned['params'] / 1e6:.2f} | "
        f"{unpruned['median_ms']:.3f} | {unpruned['p90_ms']:.3f} |",
        f"| after | {percent(tuned['top1'])} (one-shot {percent(tuned.get('one_shot_top1'))}) | {pruned['macs'] / 1e6:.1f} | "
        f"{pruned['params'] / 1e6:.2f} | {pruned['median_ms']:.3f} | {pruned['p90_ms']:.3f} |",
    ]
    for baseline_row in summary["baselines_at_equal_latency"]:
        if "top1" in baseline_row:
            lines.append(f"| {_baseline_label(baseline_row, pruned['median_ms'])} | {percent(baseline_row['top1'])} (one-shot "
                         f"{percent(baseline_row.get('one_shot_top1'))}) | {baseline_row['macs'] / 1e6:.1f} | | "
                         f"{baseline_row['measured_ms']:.3f} | |")
        else:
            lines.append(f"| {baseline_row['name']} | {baseline_row['skipped']} | | | | |")
    lines += ["", f"Speedup {summary['speedup']:.2f}x with {summary['macs_kept']:.1%} of the MACs and "
              f"{summary['params_kept']:.1%} of the params kept."
              f"{_slower_line(summary['speedup'], allocation, pruned['backend'])} "
              f"ONNX parity (fp32): max abs {exported['parity_fp32']['max_abs_diff']:.2e}, "
              f"relative {exported['parity_fp32']['rel_diff']:.2e}, top-1 agreement {exported['parity_fp32']['top1_agreement']:.3f}.",
              _selection_line(selection) + f" Groups that cannot shrink: {_fixed_groups_line(allocation)}.", ""]
    if "target_ms" in allocation:
        verdict = latency_verdict(config["target"], baseline["latency_ms"], allocation["target_ms"], unpruned["median_ms"],
                                  pruned["median_ms"])
        summary["latency_vs_target"] = verdict["ratio"]
        summary["latency_verdict"] = verdict
        full_widths = {group["id"]: group["width"] for group in selection["groups"]}
        lines.append(f"Latency target {allocation['target_ms']:.3f} ms (floor {allocation['floor_ms']:.3f} ms, channel multiple "
                     f"{allocation['align']}{_alignment_scores(allocation)}); " + _uniform_line(allocation, full_widths) +
                     "allocation probes: " + ", ".join(f"{p['measured_ms']:.3f}" for p in allocation["probes"]) +
                     " ms" + _confirmation_line(allocation) + ". " + verdict["text"])
    lines += ["", "![accuracy vs latency](accuracy_vs_latency.png) ![widths](widths.png)", ""]
    io.write_text(out / "report.md", "\n".join(lines))
    io.write_json(out / "report.json", summary)
    plot_accuracy_latency(out, summary)
    plot_widths(out, selection, allocation)
    return summary


def _confirmation_line(allocation):
    confirmations = allocation.get("confirmations") or []
    if not confirmations:
        return ""
    steps = ", then ".join(f"{c['confirmed_ms']:.3f} ms at {c['cuts']} cuts" for c in confirmations)
    return (f"; the choice re-timed as the final bench times it, interleaved with the unpruned network: {steps}; "
            f"kept: {allocation['cuts']} cuts")


def latency_verdict(target, start_ms, target_ms, unpruned_ms, pruned_ms):
    """Whether the final bench lands in the window, as a dict with a sentence for the report.

    A relative target ("0.5x") is a speedup, so it is judged against the unpruned network measured back to back with
    the pruned one: a CPU's speed drifts by several percent within one run (``reports/demo_cpu/stop16/``: the unpruned
    network measured 13.04 ms at the start and 13.84 ms in the final bench). The ratio to the target fixed at the start
    is given beside it. An absolute target ("2.5ms") is judged as it stands.
    """
    against_start = pruned_ms / target_ms
    if budget.parse_target(target, "latency")[0] == "relative":
        now_ms = target_ms / start_ms * unpruned_ms
        ratio = pruned_ms / now_ms
        measured = (f"Final bench: {pruned_ms:.3f} ms against the unpruned network's {unpruned_ms:.3f} ms back to back, "
                    f"{ratio:.3f} of the target {target} (against its {start_ms:.3f} ms at the start of the run: "
                    f"{against_start:.3f})")
    else:
        ratio = against_start
        measured = f"Final bench: {pruned_ms:.3f} ms, {ratio:.3f} of the target"
    window = budget.LATENCY_WINDOW
    inside = window[0] <= ratio <= window[1]
    text = measured + (f", inside [{window[0]:.2f}, {window[1]:.2f}]." if inside else
                       f", **outside [{window[0]:.2f}, {window[1]:.2f}]**: the final bench disagrees with the allocation probes.")
    return {"ratio": ratio, "against_start_target": against_start, "inside": inside, "text": text}


def measured_on(run_dir, summary):
    """The machine, the backend's software (and GPU driver) and the latency settings of a run's final bench (its
    bench.csv), as one line."""
    path = Path(run_dir) / "bench.csv"
    try:
        pruned = pd.read_csv(path, dtype=str, keep_default_na=False).set_index("model").loc["pruned"]
    except (KeyError, ValueError) as err:  # no model column or pruned row; pandas' parser errors are ValueErrors
        raise UserError(f"'{path}' is not a run's final bench (no row for the pruned model: {err}); delete its "
                        "bench.json and run the same python -m compress command with --resume to bench it again") from None
    settings = ", ".join(f"{key} {pruned[key]}" for key in latency.SETTING_KEYS if pruned.get(key))
    return f"{latency.timed_with(summary['environment'], pruned['backend'])}: {settings}"


def save_figure(figure, path):
    """Write a matplotlib figure atomically and close it."""
    figure.tight_layout()
    io.write_with(path, lambda f: figure.savefig(f, format="png", dpi=110))
    plt.close(figure)


def plot_accuracy_latency(out, summary):
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    points = [("unpruned", summary["before"]), (summary["method"], summary["after"])]
    for baseline_row in summary["baselines_at_equal_latency"]:
        if "top1" in baseline_row:
            points.append((_baseline_label(baseline_row, summary["after"]["median_ms"]),
                           {"median_ms": baseline_row["measured_ms"], "top1": baseline_row["top1"], "macs": baseline_row["macs"]}))
    for name, point in points:
        if point.get("top1") is not None:
            left.scatter(point["median_ms"], 100 * point["top1"], label=name)
        right.scatter(point["macs"] / 1e6, point["median_ms"], label=name)
    left.set(xlabel="measured median latency (ms)", ylabel="test top-1 (%)", title="accuracy vs measured latency")
    right.set(xlabel="MACs (M)", ylabel="measured median latency (ms)", title="MACs vs latency")
    right.legend(fontsize=8)
    save_figure(figure, out / "accuracy_vs_latency.png")


def _tuning(config, tuned, baseline):
    if "history" not in tuned:
        return "not fine-tuned" + (" (no labels: a latency-only run)" if baseline["top1"] is None else "")
    epochs = tuned["history"][-1]["epoch"]  # as run: whole steps of a fractional --finetune-epochs
    return f"fine-tuned {epochs:.4g} epoch{'' if epochs == 1 else 's'}" + (" with KD" if config["kd"] else "")


def _baseline_label(row, pruned_ms):
    """A baseline's name with its measured latency against the pruned model's: equal latency is the aim, not a given."""
    return f"{row['name']} at {row['measured_ms'] / pruned_ms:.2f}x the pruned model's latency"


def _slower_line(speedup, allocation, backend):
    """A MACs or params target met by a network slower than the unpruned one says so (a latency target's verdict does)."""
    if speedup >= 1 or "target_ms" in allocation:
        return ""
    return (f" **The pruned network is slower than the unpruned one on {backend}**: fewer MACs are not less latency "
            f"(channel multiple {allocation['align']}); give --target-latency instead, which is measured.")


def _fixed_groups_line(allocation):
    fixed = allocation.get("cannot_shrink") or {}
    return ", ".join(f"{gid} ({why})" for gid, why in fixed.items()) or "none"


def _alignment_scores(allocation):
    """The measurements behind the channel multiple, when this run measured it."""
    scores = allocation.get("align_ms_saved_per_mmac")
    if not scores:
        return ""
    line = ", measured " + ", ".join(f"{align}: {ms:.4f}" for align, ms in scores.items()) + " ms saved per million MACs removed"
    floors = allocation.get("align_floor_ms")  # runs before the floors were measured lack them
    return line + (", narrowest networks " + ", ".join(f"{align}: {ms:.3f}" for align, ms in floors.items()) + " ms"
                   if floors else "")


def _uniform_line(allocation, full_widths):
    """Where the one aligned keep ratio landed, how far under it the curves could cut, and which groups went that far
    when it is under the ratio: a MACs count hides a residual stream cut to 8 channels (reports/h200_2026-11-29/)."""
    if allocation.get("uniform_ratio") is None:
        return ""
    line = (f"one aligned keep ratio {allocation['uniform_ratio']:.3f} measured {allocation['uniform_ms']:.3f} ms, and no group "
            f"went under {allocation['min_share']:g} of it")
    if allocation.get("ratio_past_floor") is not None:
        line += (f" until the widths there re-timed over the target, and the choice went on to the aligned ratio "
                 f"{allocation['ratio_past_floor']:.3f}")
    floors, widths = allocation.get("group_floors", {}), allocation["widths"]
    at_floor = [f"{gid} {full_widths[gid]} -> {width}" for gid, width in widths.items()
                if width == floors.get(gid) and width < full_widths[gid]]
    if allocation["min_share"] < 1 and at_floor:
        line += f"; cut to that floor: {', '.join(at_floor)}"
    return line + "; "


def _selection_line(selection):
    if not selection.get("sequential"):
        return f"Selection took {selection['seconds']:.1f} s."
    line = (f"Selection took {selection['curves_seconds']:.1f} s for the per-group curves and {selection['seconds']:.1f} s "
            "at the allocated widths (groups input to output, each on the network the earlier cuts left).")
    winners = [g["imitation"] for g in selection["groups"] if "imitation" in g]
    if winners:
        line += (f" Each cut group's readers were re-fitted to the unpruned network; local imitation won "
                 f"{winners.count('local')} of the {len(winners)} cut groups, global (GFS) {winners.count('global')}.")
    return line


def plot_widths(out, selection, allocation):
    ids = [g["id"] for g in selection["groups"]]
    figure, axis = plt.subplots(figsize=(10, 4))
    axis.bar(range(len(ids)), [g["width"] for g in selection["groups"]], color="lightgray", label="before")
    axis.bar(range(len(ids)), [allocation["widths"].get(i, 0) for i in ids], color="tab:blue", label="after")
    axis.set_xticks(range(len(ids)), ids, rotation=90, fontsize=6)
    axis.set(ylabel="channels", title="widths per group")
    axis.legend()
    save_figure(figure, out / "widths.png")


def compare_runs(run_dirs, out=None):
    """Several runs in one table and one Pareto plot (accuracy vs measured latency).

    One latency axis needs one machine and one set of latency settings: runs measured otherwise are refused, as
    ``python -m bench`` refuses such rows.
    """
    rows = []
    for run_dir in run_dirs:
        path = Path(run_dir) / "report.json"
        try:
            summary = io.read_json(path)
            rows.append({"run": str(run_dir), "target": summary["target"], "method": summary["method"],
                         "top1": summary["after"]["top1"], "macs": summary["after"]["macs"],
                         "median_ms": summary["after"]["median_ms"], "measured on": measured_on(run_dir, summary)})
        except (KeyError, TypeError, ValueError) as err:  # JSON that is not a run's report (read_json refuses non-JSON)
            raise UserError(f"'{path}' is not the report of a python -m compress run ({type(err).__name__}: {err}); "
                            "run its python -m compress command with --resume to write it again") from None
    table = pd.DataFrame(rows).sort_values("median_ms")
    distinct = table.drop_duplicates("measured on")[["run", "measured on"]].values.tolist()
    if len(distinct) > 1:
        (run, setting), (other_run, other_setting) = distinct[:2]
        raise UserError(f"runs measured on different machines or settings cannot share a latency axis: '{run}' ({setting}) "
                        f"and '{other_run}' ({other_setting}); compare runs measured alike")
    print(table.to_markdown(index=False))
    if out:
        out = Path(out)
        io.write_text(out / "runs.md", table.to_markdown(index=False) + "\n")
        # Accuracy where runs measured it; latency-only runs (random weights) have none, so their MACs instead.
        has_accuracy = table["top1"].notna().any()
        shown = table[table["top1"].notna()] if has_accuracy else table
        values = 100 * shown["top1"].astype(float) if has_accuracy else shown["macs"] / 1e6
        figure, axis = plt.subplots(figsize=(6, 4))
        axis.scatter(shown["median_ms"], values)
        front = values.cummax() == values  # sorted by latency: nothing faster does better
        axis.plot(shown["median_ms"][front], values[front], "r--", label="Pareto front")
        for run, milliseconds, value in zip(shown["run"], shown["median_ms"], values):
            axis.annotate(Path(run).name, (milliseconds, value), fontsize=7)
        axis.set(xlabel="measured median latency (ms)", ylabel="test top-1 (%)" if has_accuracy else "MACs (M), latency-only runs")
        axis.legend()
        save_figure(figure, out / "pareto.png")
    return table
