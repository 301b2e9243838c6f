"""Training: teachers from scratch, fine-tuning pruned networks (optionally distilled), Scratch-E.

SGD with Nesterov momentum, a per-step cosine schedule, label smoothing, optional KD from the
unpruned network, AMP on CUDA, channels_last everywhere (it halves a CPU training step too), a
checkpoint every epoch with ``resume``, and DistributedDataParallel when launched under ``torchrun``. Callers
re-estimate BN statistics (``recalibrate_bn``) before evaluating a network whose channels were cut.
"""
import hashlib
import itertools
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from compress import data as datasets, io
from compress.errors import UserError
from export.onnx import export_onnx
from export.parity import ort_session


def setup_distributed(device):
    """Initialise torch.distributed when launched by torchrun, with NCCL for CUDA training and gloo for CPU training
    (also on a machine with a GPU); returns (rank, world_size)."""
    if "RANK" not in os.environ or dist.is_initialized():
        return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    on_cuda = torch.device(device).type == "cuda"
    dist.init_process_group("nccl" if on_cuda else "gloo")
    if on_cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    return dist.get_rank(), dist.get_world_size()


def _inputs(data, images, device, train):
    images = images.to(device, non_blocking=True)
    images = data.prepare(images, train=train)
    return images.contiguous(memory_format=torch.channels_last) if images.dim() == 4 else images


def frozen_forward(model, input_size, device):
    """``model``'s eval-mode forward, for evaluation and for KD targets: on the CPU the network exported to ONNX and
    run by ONNX Runtime on torch's thread count, over three times as fast as PyTorch eager on this project's VM (the
    MobileNetV2 teacher over the 10k test images, same top-1: reports/cpu_inference/); on a GPU the module itself,
    under the caller's AMP.

    ONNX Runtime holds the graph once its session is made, so the exported file is gone when this returns.
    """
    device = torch.device(device)
    model.eval().to(device, memory_format=torch.channels_last)
    if device.type != "cpu":
        return model
    with tempfile.TemporaryDirectory() as scratch:
        session = ort_session(export_onnx(model, input_size, Path(scratch) / "model.onnx"), threads=torch.get_num_threads())
    name = session.get_inputs()[0].name
    return lambda images: torch.from_numpy(session.run(None, {name: images.float().contiguous().numpy()})[0])


@torch.no_grad()
def evaluate(model, data, device):
    """Top-1 and cross-entropy on the real test split."""
    device = torch.device(device)
    forward = frozen_forward(model, data.input_size, device)
    correct = total = 0
    loss_sum = 0.0
    for images, labels in data.val:
        labels = labels.to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = forward(_inputs(data, images, device, train=False)).float()
        loss_sum += nn.functional.cross_entropy(logits, labels, reduction="sum").item()
        correct += (logits.argmax(1) == labels).sum().item()
        total += len(labels)
    return {"top1": correct / total, "loss": loss_sum / total}


@torch.no_grad()
def recalibrate_bn(model, data, device, batches=50):
    """Re-estimate BatchNorm running statistics on ``batches`` training batches, unaugmented (a cumulative average, as
    torch's ``update_bn`` makes it)."""
    model.to(device, memory_format=torch.channels_last)
    batches_seen = itertools.islice(datasets.unaugmented_train(data), batches)
    inputs = (_inputs(data, images, torch.device(device), train=False) for images, _ in batches_seen)
    first = next(inputs, None)
    if first is None:
        raise UserError(no_full_batch(data))
    torch.optim.swa_utils.update_bn(itertools.chain([first], inputs), model)
    return model.eval()


def no_full_batch(data):
    """The one-line error for a training split smaller than one batch (the loaders drop incomplete batches)."""
    return (f"the training split ({len(data.train.dataset)} images) holds no full batch of {data.train.batch_size}; "
            "lower the batch size, or use more training images (a higher --train-limit, where one is set)")


def reinitialise(model):
    """Fresh weights for the same (pruned) architecture: Scratch-E in 'Rethinking the Value of Network Pruning'."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.reset_parameters()
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0, 0.01)
            nn.init.zeros_(module.bias)
    return model


KD_TEMPERATURE = 4.0  # the softening of both distributions, in fine-tuning and in a KD selection loss alike


def distillation(student_logits, teacher_logits, temperature=KD_TEMPERATURE):
    """Per sample, KL(teacher || student) between temperature-softened distributions over the last dimension, scaled
    by T^2 (Hinton et al.); ``teacher_logits`` broadcast against ``student_logits``."""
    student = torch.log_softmax(student_logits / temperature, -1)
    teacher = torch.log_softmax(teacher_logits / temperature, -1).expand_as(student)
    return nn.functional.kl_div(student, teacher, reduction="none", log_target=True).sum(-1) * temperature**2


MOMENTUM = 0.9  # SGD with Nesterov momentum, as torchvision's classification recipes


def _parameter_groups(model, weight_decay):
    decay, no_decay = [], []
    for parameter in model.parameters():
        (decay if parameter.dim() > 1 else no_decay).append(parameter)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def fingerprint(settings):
    """A short hash of everything that defines a training run, so --resume refuses a different one."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


FINETUNE_WARMUP = 0.2  # share of a pruned network's fine-tuning steps spent warming up (see ``train``)
# A pruned network's peak fine-tuning learning rate: over one epoch with KD, 0.03 beat 0.01 and 0.1
# (reports/finetune_recipe_cpu/).
FINETUNE_LR = 0.03
# Its batch size: over the same one epoch, 128 (twice the steps of 256) gained 0.4 points at 0.10x MACs on both shuffle
# seeds and was even at 0.25x (+0.3 and -0.1); 64 gained no more (reports/finetune_recipe_cpu/). Teachers and
# Scratch-E keep compress.train's 256.
FINETUNE_BATCH = 128
# Weight decay: the shipped teacher's 5e-4 (MobileNetV2's paper used 4e-5 on ImageNet, over far more steps), kept
# when fine-tuning what was pruned from it.
TEACHER_WEIGHT_DECAY = FINETUNE_WEIGHT_DECAY = 5e-4


def check_warmup(share, flag):
    """A warm-up share must lie in [0, 1); one line naming ``flag`` otherwise."""
    if not 0.0 <= share < 1.0:
        raise UserError(f"{flag} {share} must lie in [0, 1): it is a share of the fine-tuning steps")


def warmup_cosine(step, total_steps, warmup_steps):
    """The learning-rate factor at ``step``: linear from 1/warmup_steps up to 1, then a cosine from 1 down to 0 over
    the steps after the warm-up, as torchvision's reference chains LinearLR and CosineAnnealingLR (no drop where the
    warm-up ends)."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    return 0.5 * (1 + math.cos(math.pi * (step - warmup_steps) / (total_steps - warmup_steps)))


def train(model, data, *, epochs, lr=FINETUNE_LR, weight_decay=FINETUNE_WEIGHT_DECAY, label_smoothing=0.1, warmup=0.0,
          teacher=None, kd_temperature=KD_TEMPERATURE, kd_alpha=0.9, device="cpu", checkpoint=None, resume=False, settings=None,
          progress=True):
    """Train ``model`` for ``epochs`` (fractions allowed: 0.1 runs a tenth of an epoch's steps).

    ``warmup`` is the share of the steps spent raising the learning rate linearly before the cosine decay. Without
    one, fine-tuning imitation's re-fitted network at 0.10x MACs for one epoch ended between 73% and 86% depending on
    the shuffle order; with a fifth of the epoch warming up, at 88.6% under two orders (reports/macs_allocation_cpu/).
    ``checkpoint`` is a path written atomically after every epoch (and at the end); with ``resume``
    training continues from it, provided it was written by the same ``settings``.
    Returns the per-epoch history [{"epoch", "loss", "lr" (of the epoch's last step), "seconds"}].
    """
    device = torch.device(device)
    rank, world_size = setup_distributed(device)
    model.to(device, memory_format=torch.channels_last)
    teach = frozen_forward(teacher, data.input_size, device) if teacher is not None else None
    steps_per_epoch = len(data.train)
    if steps_per_epoch == 0:
        raise UserError(no_full_batch(data))
    if world_size > 1 and not isinstance(getattr(data.train, "sampler", None), torch.utils.data.DistributedSampler):
        raise UserError("under torchrun the data must be loaded after torch.distributed is initialised, so each rank gets "
                        "its shard; only python -m compress.train trains in parallel")
    total_steps = max(1, int(round(epochs * steps_per_epoch)))
    epochs_run = total_steps / steps_per_epoch  # what whole steps make of a fractional ``epochs``
    optimizer = torch.optim.SGD(_parameter_groups(model, weight_decay), lr=lr, momentum=MOMENTUM, nesterov=True)
    warmup_steps = min(int(round(warmup * total_steps)), total_steps - 1)  # the last step always decays: none divides by 0
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: warmup_cosine(step, total_steps, warmup_steps))
    settings_hash = fingerprint({**(settings or {}), "epochs": epochs, "lr": lr, "warmup": warmup, "kd": teacher is not None})
    step, history = 0, []
    if resume and checkpoint and Path(checkpoint).is_file():
        try:
            state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        except Exception as err:  # half a file from a killed writer of old, or another program's
            raise UserError(f"'{checkpoint}' is not a training state ({type(err).__name__}); delete it or drop --resume") from None
        if not isinstance(state, dict) or state.get("fingerprint") != settings_hash:
            raise UserError(f"'{checkpoint}' was written by a different training configuration; use another --out or drop --resume")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step, history = state["step"], state["history"]
        if "rng" in state:  # the next epoch's shuffle and augmentation continue, not replay the first
            torch.set_rng_state(state["rng"])
        if torch.cuda.is_available() and state.get("cuda_rng"):
            torch.cuda.set_rng_state_all(state["cuda_rng"])
    trained = nn.parallel.DistributedDataParallel(model) if world_size > 1 else model
    use_amp = device.type == "cuda"
    criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    bar = tqdm(total=total_steps, initial=step, desc="train", disable=None if progress and rank == 0 else True, leave=False)
    epoch_started, running = time.perf_counter(), []
    while step < total_steps:
        if isinstance(getattr(data.train, "sampler", None), torch.utils.data.DistributedSampler):
            data.train.sampler.set_epoch(step // steps_per_epoch)
        trained.train()
        for images, labels in data.train:
            images, labels = _inputs(data, images, device, train=True), labels.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                logits = trained(images)
                loss = criterion(logits, labels)
                if teach is not None:
                    with torch.no_grad():
                        teacher_logits = teach(images)
                    loss = (1 - kd_alpha) * loss + kd_alpha * distillation(logits.float(), teacher_logits.float(), kd_temperature).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            step_lr = scheduler.get_last_lr()[0]  # the rate this step trains at; after scheduler.step() it is the next one's
            optimizer.step()
            scheduler.step()
            step += 1
            running.append(loss.detach())
            bar.update()
            if step % steps_per_epoch == 0 or step == total_steps:
                history.append({"epoch": step / steps_per_epoch, "loss": float(torch.stack(running).mean()),
                                "lr": step_lr, "seconds": time.perf_counter() - epoch_started})
                epoch_started, running, last = time.perf_counter(), [], history[-1]
                if not math.isfinite(last["loss"]):  # nothing to learn from NaN weights, and no state worth resuming
                    raise UserError(f"training diverged: the loss was {last['loss']} by epoch {last['epoch']:.4g} at a "
                                    f"learning rate of {step_lr:.3g}; lower the learning rate or warm it up (--lr/--lr-warmup, "
                                    "or --finetune-lr/--finetune-warmup of python -m compress)")
                if progress and rank == 0:  # one line per epoch: the bar alone leaves nothing in a log file
                    tqdm.write(f"epoch {last['epoch']:.4g}/{epochs_run:.4g}: train loss {last['loss']:.4f}, "
                               f"lr {last['lr']:.3g}, {last['seconds']:.0f} s", file=sys.stdout)
                    sys.stdout.flush()
                if checkpoint and rank == 0:
                    io.torch_save(checkpoint, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                               "scheduler": scheduler.state_dict(), "step": step, "history": history,
                                               "fingerprint": settings_hash, "rng": torch.get_rng_state(),
                                               "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []})
            if step >= total_steps:
                break
    bar.close()
    return history
