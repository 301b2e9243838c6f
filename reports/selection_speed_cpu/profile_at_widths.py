"""Where the time of the demo's selection at widths goes: the stage re-run on the widths a committed demo allocated.

PYTHONPATH=. .venv/bin/python reports/selection_speed_cpu/profile_at_widths.py reports/demo_cpu/stop24
Prints the commit, the stage's wall time, the seconds per group and the functions that took the most time (cProfile).
"""
import argparse
import cProfile
import datetime
import pstats
import subprocess
import tempfile
import time
from pathlib import Path

import torch
import yaml

from bench import latency
from compress import io, pipeline


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a committed demo run: its config.yaml and allocation.json")
    parser.add_argument("--top", type=int, default=25, help="functions listed by cumulative time")
    args = parser.parse_args()
    config = yaml.safe_load((args.run_dir / "config.yaml").read_text())
    config["weights"] = "compress/assets/mbv2_fmnist_teacher.pt"
    widths = io.read_json(args.run_dir / "allocation.json")["widths"]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    print(f"# {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%dT%H:%M:%SZ}, commit {commit}, {latency.cpu_name()}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads; widths of {args.run_dir}")
    model, arch, data = pipeline.load(config, config["weights"])
    profile = cProfile.Profile()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        profile.enable()
        selection = pipeline.select_at_widths(config, model, arch, data, {"seconds": None}, widths, Path(scratch) / "rebuilt.pt")
        profile.disable()
    print(f"selection at widths: {time.perf_counter() - started:.1f} s")
    for group in selection["groups"]:
        if group["keep"] < group["width"]:
            print(f"  {group['id']}: {group['width']} -> {group['keep']}, {group['seconds']:.2f} s, {group.get('imitation')}")
    pstats.Stats(profile).sort_stats("cumulative").print_stats(args.top)


if __name__ == "__main__":
    main()
