"""How often the narrowest network is timed in one run with --align 8 (the reach check, then the allocation's floor)."""
import sys
from importlib import resources
from compress import cli, macs, timing

timed = []
real = timing.time_back_to_back
def spy(config, models, input_size, rounds=None):
    timed.append([macs.count_macs_params(m, input_size)[0] if not isinstance(m, (str,)) and hasattr(m, "parameters") else None
                  for m in models[1:]])
    return real(config, models, input_size, rounds)
timing.time_back_to_back = spy
teacher = str(resources.files("compress") / "assets" / "mbv2_fmnist_teacher.pt")
try:
    cli.main(["--weights", teacher, "--data", "synthetic", "--heldout", "16", "--method", "l1", "--finetune-epochs", "0",
              "--backend", "ort-cpu", "--align", "8", "--target-latency", "0.5x", "--bench-rounds", "1",
              "--out", sys.argv[1], "--overwrite"])
except SystemExit as stop:
    print("exit", stop.code)
smallest = min(m for call in timed for m in call if m)
print("timings of one network list:", len(timed), "; lists holding the narrowest network (MACs %d):" % smallest,
      sum(smallest in call for call in timed))
