"""Loss of pruned networks in eval mode, in training mode, and in training mode with dropout off; the classifier's weight norm.

    python reports/imitation_dropout_cpu/dropout_check.py PRUNED.pt [PRUNED.pt ...]
"""
import sys, torch
from torch import nn
from compress import data as datasets, finetune, graph
torch.set_num_threads(1)
data = datasets.load_data("fashion-mnist", None, stem="small", batch_size=256)
x, y = next(iter(data.train))
x = finetune._inputs(data, x, torch.device("cpu"), False)
crit = nn.CrossEntropyLoss()
for path in sys.argv[1:]:
    model, _ = graph.load_checkpoint(path)
    lin = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    drops = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    with torch.no_grad():
        model.eval(); e = crit(model(x), y).item()
        model.train(); torch.manual_seed(0); t = crit(model(x), y).item()
        for d in drops: d.eval()
        t2 = crit(model(x), y).item()
    print(f"{path}: eval {e:.3f} train {t:.3f} train-without-dropout {t2:.3f}; classifier |W| {lin.weight.norm():.2f} max {lin.weight.abs().max():.3f}, dropout {[d.p for d in drops]}")
