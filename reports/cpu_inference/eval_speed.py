"""The shipped MobileNetV2 teacher over the 10k Fashion-MNIST test images, evaluated by PyTorch eager (as
finetune.evaluate did until this script's commit) and by finetune.evaluate (ONNX Runtime on the CPU): time and top-1.

    .venv/bin/python reports/cpu_inference/eval_speed.py > reports/cpu_inference/eval_speed.log
"""
import datetime
import subprocess
import time

import torch
from torch import nn

from bench import latency
from compress import data as datasets, finetune, graph

TEACHER = "compress/assets/mbv2_fmnist_teacher.pt"


@torch.no_grad()
def evaluate_eager(model, data):
    model.eval().to(memory_format=torch.channels_last)
    correct = total = 0
    loss_sum = 0.0
    for images, labels in data.val:
        logits = model(finetune._inputs(data, images, torch.device("cpu"), train=False)).float()
        loss_sum += nn.functional.cross_entropy(logits, labels, reduction="sum").item()
        correct += (logits.argmax(1) == labels).sum().item()
        total += len(labels)
    return {"top1": correct / total, "loss": loss_sum / total}


def main():
    model, arch = graph.load_checkpoint(TEACHER)
    data = datasets.load_data("fashion-mnist", stem=arch["stem"], batch_size=128)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    print(f"# {datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}, commit {commit}, "
          f"{latency.cpu_name()}, torch {torch.__version__} on {torch.get_num_threads()} threads, batch 128, "
          f"{len(data.val.dataset)} test images")
    for name, evaluate in (("PyTorch eager", lambda: evaluate_eager(model, data)),
                           ("finetune.evaluate (ONNX Runtime)", lambda: finetune.evaluate(model, data, "cpu"))):
        for repeat in range(2):
            started = time.perf_counter()
            metrics = evaluate()
            print(f"{name:34s} run {repeat}: {time.perf_counter() - started:6.1f} s, top-1 {metrics['top1']:.4f}, "
                  f"loss {metrics['loss']:.6f}", flush=True)


if __name__ == "__main__":
    main()
