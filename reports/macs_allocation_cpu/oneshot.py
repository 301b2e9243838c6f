"""One-shot top-1 (BN re-estimated) of the rebuilt checkpoints of the MACs-target runs."""
import sys
from compress import data as datasets, finetune, graph
data = datasets.load_data("fashion-mnist", None, stem="small", batch_size=256)
for path in sys.argv[1:]:
    model, _ = graph.load_checkpoint(path)
    top1 = finetune.evaluate(finetune.recalibrate_bn(model, data, "cpu"), data, "cpu")["top1"]
    print(f"{path}: one-shot (BN re-estimated) top-1 {top1:.4f}", flush=True)
