"""A pruned network's latency relative to the unpruned one, timed as the allocation used to (each network alone, one
after the other) and as it does now (the two taking turns every iteration), on the allocation's own settings:
ort-cpu, batch 8, fp32, 1 thread, at least 30 iterations and 1 s after 0.3 s of warm-up.

    .venv/bin/python reports/paired_timing_cpu/paired_timing.py 25 > reports/paired_timing_cpu/paired_timing.log

The pruned network keeps 0.656 of every group at multiples of 8 (the demo's uniform floor on 2026-11-29).
"""
import datetime
import statistics
import subprocess
import sys

from bench import latency
from compress import budget, graph

TEACHER = "compress/assets/mbv2_fmnist_teacher.pt"
OPTIONS = dict(min_iters=30, min_seconds=1.0, warmup_seconds=0.3, threads=1)


def networks():
    """(the shipped teacher, the same network keeping 0.656 of every group at multiples of 8, their input size)."""
    teacher, arch = graph.load_checkpoint(TEACHER)
    input_size = tuple(arch["input_size"])
    full = {group.id: group.width for group in graph.list_groups(teacher, input_size)}
    pruned = graph.build_from_arch({**arch, "widths": budget.aligned_widths(full, 0.656, 8, set(full))})
    return teacher, pruned, input_size


def print_header():
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    print(f"# {datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}, commit {commit}, "
          f"{latency.cpu_name()}, ort-cpu batch 8 fp32, 1 thread")


def main(trials):
    teacher, pruned, input_size = networks()
    print_header()
    print("# trial | alone: unpruned ms, pruned ms, ratio | in turns: unpruned ms, pruned ms, ratio")
    alone, turns = [], []
    for trial in range(trials):
        unpruned_alone = latency.measure(teacher, "ort-cpu", 8, "fp32", input_size, **OPTIONS)["median_ms"]
        pruned_alone = latency.measure(pruned, "ort-cpu", 8, "fp32", input_size, **OPTIONS)["median_ms"]
        unpruned_turns, pruned_turns = (rounds[0]["median_ms"] for rounds in latency.measure_rounds(
            [teacher, pruned], "ort-cpu", 8, "fp32", input_size, rounds=1, **OPTIONS))
        alone.append(pruned_alone / unpruned_alone)
        turns.append(pruned_turns / unpruned_turns)
        print(f"{trial:3d} | {unpruned_alone:7.3f} {pruned_alone:7.3f} {alone[-1]:.3f} | "
              f"{unpruned_turns:7.3f} {pruned_turns:7.3f} {turns[-1]:.3f}", flush=True)
    for name, ratios in (("alone", alone), ("in turns", turns)):
        print(f"# {name}: ratio min {min(ratios):.3f} median {statistics.median(ratios):.3f} max {max(ratios):.3f} "
              f"std {statistics.stdev(ratios):.3f} over {len(ratios)} trials")


if __name__ == "__main__":
    main(int(sys.argv[1]))
