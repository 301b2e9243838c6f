"""How this VM's speed changes within a minute: one ONNX Runtime session each for the unpruned teacher (A) and the
network paired_timing.py prunes (B), timed alternately in blocks of at least 30 iterations and 1 s after 0.3 s of
warm-up (ort-cpu, batch 8, fp32, 1 thread), printing each block's median.

    .venv/bin/python reports/paired_timing_cpu/speed_switching.py 40 > reports/paired_timing_cpu/speed_switching.log
"""
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench import latency
from paired_timing import networks, print_header  # this folder's other script


def main(blocks):
    teacher, pruned, input_size = networks()
    print_header()
    print("# seconds since start | A (unpruned) block median ms | B (pruned) block median ms | B/A")
    with tempfile.TemporaryDirectory() as scratch:
        steps = [latency._prepare(model, "ort-cpu", 8, "fp32", input_size, 1, True, None, Path(scratch) / name)
                 for name, model in (("A", teacher), ("B", pruned))]
        started = time.perf_counter()
        for _ in range(blocks):
            medians = [statistics.median(latency._time_interleaved([step], 30, 1.0, 0.3)[0]) for step in steps]
            print(f"{time.perf_counter() - started:6.1f} | {medians[0]:7.3f} | {medians[1]:7.3f} | {medians[1] / medians[0]:.3f}",
                  flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]))
