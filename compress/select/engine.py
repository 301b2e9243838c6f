"""Fast masked evaluation: many channel masks of one group in a single forward pass.

Greedy selection asks, at every step, "what is the network's loss if this group keeps channels
S + {c}?" for dozens of candidates c. Everything upstream of the group's first reader is the
same for all candidates, so it is computed once per mini-batch (the *cache*); only the layers
downstream of the group's readers run again, with the candidates stacked along the batch.

A mask multiplies the group's channels at the input of every layer that reads them (the
group's *consumers*). That is exactly what folding the mask into the consumers' input weights
does, so the masked network and the physically pruned one compute the same function.

``suffix(graph_module, consumers)`` plans that re-run once per group: which nodes it runs, which
values it reads from the cache, and its conv -> BatchNorm pairs folded as the weights stand. A
caller that changes the weights (a re-fit, re-estimated statistics) plans again.
"""
from typing import NamedTuple

import torch
from torch import fx, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from compress import finetune


def trace(model):
    """A torch.fx GraphModule sharing ``model``'s parameters."""
    return fx.symbolic_trace(model)


class Cache(dict):
    """Node -> value for one batch, and ``largest``: the element count of the pass's largest value."""

    largest = 0


class _Recorder(fx.Interpreter):
    """A forward pass that keeps the values of ``keep`` (every node's when None), frees the rest as it goes, and does
    not run the nodes in ``skip``."""

    def __init__(self, graph_module, keep, skip=()):
        super().__init__(graph_module, garbage_collect_values=keep is not None)
        self.keep, self.skip, self.kept = keep, skip, Cache()

    def run_node(self, node):
        if node in self.skip:
            return None
        value = super().run_node(node)
        if isinstance(value, torch.Tensor):
            self.kept.largest = max(self.kept.largest, value.numel())
        if self.keep is None or node in self.keep:
            self.kept[node] = value
        return value


class Suffix(NamedTuple):
    """One group's masked re-run: the ``live`` nodes downstream of its ``consumers``, the ``frontier`` values they
    read from the cache, and ``folded``: each suffix conv whose eval-mode BatchNorm alone reads it, as one fused conv."""

    consumers: frozenset
    live: frozenset
    frontier: frozenset
    folded: dict


def suffix(graph_module, consumers):
    """The plan of ``consumers``' masked re-runs, for the weights as they are now."""
    live = _downstream(graph_module, consumers)
    frontier = frozenset(arg for node in live for arg in node.all_input_nodes if arg not in live)
    return Suffix(frozenset(consumers), live, frontier, _folded_norms(graph_module, live))


@torch.no_grad()
def record(graph_module, inputs, dtype=None, plan=None):
    """The cache that candidate evaluations start from: every node's value for ``inputs``, or with a ``plan``
    (``suffix``) only the values its masked re-run reads (the whole network's values for 2000 held-out images
    took over 12 GB at 28 px), computed without running the suffix itself, which the masks re-run anyway (the
    demo's recordings took 36-39 s instead of 52-56 s, reports/selection_speed_cpu/)."""
    if inputs.dim() == 4:
        inputs = inputs.contiguous(memory_format=torch.channels_last)
    interpreter = _Recorder(graph_module, keep=None) if plan is None else _Recorder(graph_module, plan.frontier, skip=plan.live)
    with autocast(inputs.device, dtype):
        interpreter.run(inputs)
    if plan is not None:  # the masks are stacked on the whole pass's largest value, suffix included
        interpreter.kept.largest = _largest_per_image(graph_module, inputs) * len(inputs)
    return interpreter.kept


def _largest_per_image(graph_module, inputs):
    """Elements of the largest value of a whole forward pass, per image; one image's pass, once per input shape."""
    sizes = graph_module.meta.setdefault("largest_per_image", {})
    shape = tuple(inputs.shape[1:])
    if shape not in sizes:
        one = _Recorder(graph_module, keep=set())
        one.run(inputs[:1])
        sizes[shape] = one.kept.largest
    return sizes[shape]


def _downstream(graph_module, consumers):
    live = set()
    for node in graph_module.graph.nodes:
        reads_live = any(arg in live for arg in node.all_input_nodes)
        if reads_live or (node.op == "call_module" and node.target in consumers):
            live.add(node)
    return frozenset(live)


def _folded_norms(graph_module, live):
    """{conv node: the conv with the eval-mode BatchNorm that alone reads it folded in} for the suffix's conv ->
    BatchNorm pairs, as the exported network computes them: the stacked suffix then skips the BatchNorms (with the
    recording above, the demo's selection at widths took 162-188 s instead of 197-202 s, reports/selection_speed_cpu/)."""
    folded = {}
    for node in live:
        norm = graph_module.get_submodule(node.target) if node.op == "call_module" else None
        if not isinstance(norm, nn.BatchNorm2d) or norm.training or not norm.track_running_stats:
            continue
        source = node.args[0]
        if source not in live or len(source.users) != 1:
            continue
        conv = graph_module.get_submodule(source.target) if source.op == "call_module" else None
        if isinstance(conv, nn.Conv2d) and not conv.training:
            folded[source] = fuse_conv_bn_eval(conv, norm)
    return folded


class _MaskedSuffix(fx.Interpreter):
    """Re-runs only the ``plan``'s live nodes (downstream of the consumers), with K masks stacked on the batch; the
    convs it folded with their BatchNorm, and those BatchNorms passed through."""

    def __init__(self, graph_module, cache, plan, masks):
        super().__init__(graph_module)
        self.cache, self.plan, self.masks = cache, plan, masks
        self.expanded = {}

    def _stacked(self, node):
        if node not in self.expanded:
            value = self.cache[node]
            if isinstance(value, torch.Tensor) and node.op != "get_attr":
                value = value.repeat(len(self.masks), *([1] * (value.dim() - 1)))
            self.expanded[node] = value
        return self.expanded[node]

    def run_node(self, node):
        if node not in self.plan.live:
            return self.cache.get(node)  # never read by the suffix, and absent from a cache recorded for this plan
        for arg in node.all_input_nodes:
            if arg not in self.plan.live:
                self.env[arg] = self._stacked(arg)
        if node.op != "call_module":
            return super().run_node(node)
        source = node.args[0] if node.args else None
        if isinstance(source, fx.Node) and source in self.plan.folded:  # the BatchNorm of a folded conv: already applied
            return self.env[source]
        if node.target in self.plan.consumers or node in self.plan.folded:
            inputs = self.env[source]
            if node.target in self.plan.consumers:
                batch = inputs.shape[0] // len(self.masks)
                mask = self.masks.repeat_interleave(batch, dim=0).to(inputs.dtype)
                inputs = inputs * mask.view(*mask.shape, *([1] * (inputs.dim() - 2)))
            module = self.plan.folded[node] if node in self.plan.folded else self.module.get_submodule(node.target)
            return module(inputs)
        return super().run_node(node)


# Elements of the largest stacked activation in one pass; more masks run in several passes. 2**30 keeps the published
# greedy step (50 candidates x 128 images) in one pass on MobileNetV2 at 28 px, where a 13-point curve on 2000
# held-out images (26000 stacked) needed over 24 GB on a CPU and was killed.
MAX_STACKED_ELEMENTS = 2**30


@torch.no_grad()
def masked_logits(graph_module, cache, plan, masks, dtype=None, max_elements=MAX_STACKED_ELEMENTS):
    """Logits of shape (K, B, classes): the network with ``masks[k]`` (K, C) applied to the ``plan``'s group.

    The masks run in as few passes as keep every stacked activation under ``max_elements``.
    """
    per_pass = max(1, max_elements // cache.largest)  # a stacked value is at most K times the pass's largest
    parts = []
    with autocast(masks.device, dtype):
        for chunk in masks.split(per_pass):
            logits = _MaskedSuffix(graph_module, cache, plan, chunk).run(None)
            parts.append(logits.float().view(len(chunk), -1, logits.shape[-1]))
    return torch.cat(parts)


def autocast(device, dtype=None):
    """``dtype`` compute; by default bf16 on CUDA, where the stacked suffix is memory-bound, and exact fp32 on CPU."""
    device_type = torch.device(device).type
    dtype = dtype or (torch.bfloat16 if device_type == "cuda" else torch.float32)
    return torch.autocast(device_type, dtype=dtype, enabled=dtype != torch.float32)


def ranking_dtype(device):
    """What greedy steps rank candidates in: bf16 wherever the hardware computes it natively (CUDA, CPUs with
    AVX512-BF16 or AMX, where a stacked CPU step runs faster than in fp32), else fp32. Ranking candidates on a
    mini-batch is far noisier than bf16 rounding; curves and re-fits stay in the default precision."""
    if torch.device(device).type == "cuda":
        return torch.bfloat16
    capabilities = torch.cpu.get_capabilities()
    return torch.bfloat16 if capabilities.get("avx512_bf16") or capabilities.get("amx_bf16") else torch.float32


def ranking_precision(device):
    """``ranking_dtype`` as a selection records it: which one ranked the candidates depends on the machine."""
    return "bf16 autocast" if ranking_dtype(device) == torch.bfloat16 else "fp32"


@torch.no_grad()
def masked_logits_one_by_one(model, inputs, consumers, masks, dtype=None):
    """The published scheme: one full forward per mask. Kept as the reference for speed and equality."""
    outputs = []
    for mask in masks:
        hooks = [
            model.get_submodule(name).register_forward_pre_hook(
                lambda _m, args, mask=mask: (args[0] * mask.view(1, -1, *([1] * (args[0].dim() - 2))),)
            )
            for name in consumers
        ]
        try:
            with autocast(inputs.device, dtype):
                outputs.append(model(inputs).float())
        finally:
            for hook in hooks:
                hook.remove()
    return torch.stack(outputs)


def loss_per_mask(logits, labels, teacher_logits=None):
    """Mean loss per mask over the batch: cross-entropy, or KD to the unpruned network's logits."""
    k, b, classes = logits.shape
    if teacher_logits is None:
        loss = torch.nn.functional.cross_entropy(logits.reshape(k * b, classes), labels.repeat(k), reduction="none")
        return loss.view(k, b).mean(1)
    return finetune.distillation(logits, teacher_logits).mean(1)


def top1_per_mask(logits, labels):
    return (logits.argmax(-1) == labels.unsqueeze(0)).float().mean(1)
