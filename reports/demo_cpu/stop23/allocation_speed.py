"""Time budget.allocate (MACs target 0.5x, --align 1) on the shipped teacher with the cost model of a given commit."""
import importlib.util, json, subprocess, sys, time
from compress import budget, graph, macs

commit, selection_path = sys.argv[1], sys.argv[2]
source = subprocess.run(["git", "show", f"{commit}:compress/macs.py"], capture_output=True, text=True, check=True).stdout
spec = importlib.util.spec_from_loader("macs_at_commit", loader=None)
module = importlib.util.module_from_spec(spec)
exec(source, module.__dict__)
budget.macs = module
model, arch = graph.load_checkpoint("compress/assets/mbv2_fmnist_teacher.pt")
selection = json.load(open(selection_path))
for repeat in range(3):
    started = time.perf_counter()
    widths, details = budget.allocate(model, tuple(arch["input_size"]), selection, 0.5 * 72938624, cost="macs", align=1)
    print(f"{commit}: budget.allocate {time.perf_counter() - started:.2f} s, reached {details['reached']} MACs, "
          f"{sum(widths.values())} channels kept", flush=True)
