"""Is the 1-epoch fine-tune unstable early? The same rebuilt network, shuffle seed and recipe as compress.train
(lr 0.01, weight decay 5e-4, KD), with a linear learning-rate warm-up over a share of the steps.

    python reports/macs_allocation_cpu/warmup_probe.py REBUILT.pt TEACHER.pt SEED SHARE
"""
import sys
import torch
from compress import data as datasets, finetune, graph

rebuilt, teacher_path, seed, warmup = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
torch.manual_seed(seed)
data = datasets.load_data("fashion-mnist", None, stem="small", batch_size=256)
model, _ = graph.load_checkpoint(rebuilt)
teacher = graph.load_checkpoint(teacher_path)[0]
history = finetune.train(model, data, epochs=1, lr=0.01, weight_decay=5e-4, teacher=teacher, warmup=warmup,
                         device="cpu", progress=False)
finetune.recalibrate_bn(model, data, "cpu")
top1 = finetune.evaluate(model, data, "cpu")["top1"]
print(f"seed {seed} warmup {warmup}: train loss {history[-1]['loss']:.4f}, test top-1 {top1:.4f}", flush=True)
