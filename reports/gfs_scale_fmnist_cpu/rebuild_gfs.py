"""Rebuild stop 8's sequential GFS selections with the current code's fold of the re-weighting.

A sequential GFS selection changes no weight but its cut groups' readers: each is masked to the kept channels
and multiplied by width / kept. The current ``_fold_uniform`` puts that factor into the BatchNorm after a reader
instead of its weights, so replaying the recorded orders through ``apply_selection`` gives the weights the
current ``select_at_widths`` would return for the same orders (BN statistics aside: they are re-estimated
before every evaluation). Re-running the selection itself took 30 and 55 minutes on this VM.

    python reports/gfs_scale_fmnist_cpu/rebuild_gfs.py reports/methods_fmnist_cpu/selection_gfs_0.25x.json OUT_DIR
"""
import copy
import shutil
import sys
from pathlib import Path

from compress import graph, io
from compress.select import apply_selection

selection_path, out = Path(sys.argv[1]), Path(sys.argv[2])
teacher, arch = graph.load_checkpoint("compress/assets/mbv2_fmnist_teacher.pt")
selection = io.read_json(selection_path)
replay = {**selection, "sequential": False}
widths = {entry["id"]: entry["keep"] for entry in selection["groups"]}
pruned = apply_selection(copy.deepcopy(teacher), tuple(arch["input_size"]), replay, widths)
name = selection_path.stem.removeprefix("selection_")
graph.save_pruned(out / "models" / f"{name}.pt", pruned, arch)
shutil.copy(selection_path, out / selection_path.name)
print(f"{name}: rebuilt -> {out / 'models' / f'{name}.pt'}")
