"""One epoch of the product's fine-tune of a rebuilt network, plus (``--beta``) a feature-distillation term: every
BatchNorm output of the pruned network is matched to the teacher's at the channels the selection kept, as a relative
squared error averaged over the layers. Does matching the features the imitation re-fit started from recover more in
one epoch than the logits alone? ``--beta 0`` is the product's recipe as it is (the control).

    python reports/feature_kd_cpu/feature_kd_probe.py REBUILT.pt SELECTION.json TEACHER.pt --seed 0 --beta 1

The recipe is ``finetune.train``'s own (peak 0.03, warm-up 0.2, batch 128, KD T 4 alpha 0.9, label smoothing 0.1); the
probe only swaps the teacher's ONNX Runtime forward for PyTorch's (to read its features) and adds the term to the KD
loss it returns.
"""
import argparse
import json
import time

import torch
from compress import data as datasets, finetune, graph

parser = argparse.ArgumentParser()
parser.add_argument("rebuilt")
parser.add_argument("selection")
parser.add_argument("teacher")
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--beta", type=float, default=1.0)
args = parser.parse_args()

torch.manual_seed(args.seed)
data = datasets.load_data("fashion-mnist", None, stem="small", batch_size=finetune.FINETUNE_BATCH)
model, arch = graph.load_checkpoint(args.rebuilt)
teacher, teacher_arch = graph.load_checkpoint(args.teacher)
input_size = tuple(arch["input_size"])

# Which teacher channels each BatchNorm of the pruned network holds: a group cut to w keeps the first w of its order,
# in their original relative order (graph.prune).
orders = {entry["id"]: entry["order"] for entry in json.loads(open(args.selection).read())["groups"]}
kept_of = {}
for group in graph.list_groups(teacher, input_size):
    width = arch["widths"].get(group.id, group.width)
    kept = torch.arange(group.width) if width == group.width else torch.tensor(sorted(orders[group.id][:width]))
    for name in group.producers:
        if isinstance(teacher.get_submodule(name), torch.nn.BatchNorm2d):
            kept_of[name] = kept

features = {"student": {}, "teacher": {}}


def record(side, name):
    def hook(module, inputs, output):
        features[side][name] = output
    return hook


for name in kept_of:
    model.get_submodule(name).register_forward_hook(record("student", name))
    teacher.get_submodule(name).register_forward_hook(record("teacher", name))


def feature_loss():
    errors = []
    for name, kept in kept_of.items():
        target = features["teacher"][name][:, kept].float()
        errors.append(((features["student"][name].float() - target) ** 2).mean() / (target**2).mean().clamp_min(1e-8))
    return torch.stack(errors).mean()


with torch.no_grad():  # the mapping checked: the first cut layers match the teacher's kept channels almost exactly
    images = data.prepare(next(iter(data.train))[0], train=False)
    model.eval()(images), teacher.eval()(images)
    errors = {name: float(((features["student"][name] - features["teacher"][name][:, kept]) ** 2).mean()
                          / (features["teacher"][name][:, kept] ** 2).mean()) for name, kept in kept_of.items()}
    print("relative feature error before fine-tuning, first layers: "
          + ", ".join(f"{name} {error:.4f}" for name, error in list(errors.items())[:4])
          + f"; mean over {len(errors)} BatchNorms {sum(errors.values()) / len(errors):.4f}", flush=True)

onnx_forward = finetune.frozen_forward


def teacher_in_torch(network, size, device):
    if network is not teacher:
        return onnx_forward(network, size, device)
    teacher.eval()
    return lambda images: teacher(images)


kd_loss, seen = finetune.distillation, []


def distillation_with_features(student_logits, teacher_logits, temperature=finetune.KD_TEMPERATURE):
    term = feature_loss()
    seen.append(float(term))
    return kd_loss(student_logits, teacher_logits, temperature) + args.beta * term / 0.9  # train() weighs KD by alpha 0.9


finetune.frozen_forward, finetune.distillation = teacher_in_torch, distillation_with_features

started = time.perf_counter()
history = finetune.train(model, data, epochs=1, lr=finetune.FINETUNE_LR, warmup=finetune.FINETUNE_WARMUP, teacher=teacher,
                         device="cpu", progress=False)
finetune.frozen_forward = onnx_forward
finetune.recalibrate_bn(model, data, "cpu")
top1 = finetune.evaluate(model, data, "cpu")["top1"]
print(f"{vars(args)}: feature loss first 10 steps {sum(seen[:10]) / 10:.4f}, last 10 {sum(seen[-10:]) / 10:.4f}; "
      f"train loss {history[-1]['loss']:.4f}, test top-1 {top1:.4f}, {time.perf_counter() - started:.0f} s", flush=True)
