"""Local imitation (Ye et al., NeurIPS 2020): keep the channels from which the group's readers can rebuild their output.

A group is grown from empty; at every step up to ``candidates`` channels not yet chosen are tried,
and the one whose addition lets the group's consumers best reconstruct their unpruned outputs, once
their weights are re-fitted by least squares on the kept channels, is kept. The rebuilt network
carries the re-fitted weights (``scale == "refit"`` in a selection entry).

A consumer's least-squares problem is fixed by the Gram matrix G = XᵀX of its inputs (sampled
feature vectors of a Linear, unfolded k×k patches of a conv) and its own weights W: its unpruned
output is Y = XWᵀ, so XᵀY = GWᵀ. The ridge term pulls the re-fit towards W rather than zero, so at
full width the re-fit is W itself (but for the dropout term below) and a short batch falls back to
plain masking instead of noise.
With an unpruned ``reference``, Y is what the reference layer outputs on the reference's own inputs,
so the re-fit also undoes the error the cuts upstream left in X.

A consumer fed through dropout (the classifiers of MobileNetV2/V3; ProxylessNAS's dropout is 0) is
re-fitted for the expected error under it, which adds p/(1-p)·Σx² to the Gram matrix's diagonal. A plain re-fit of
the classifier on correlated pooled features cancels large weights against each other (|W| 73 against
the teacher's 2.7 at 0.10x MACs): exact in eval mode, but dropout breaks the cancellation, so the first
training steps saw a loss of 2.5 instead of 0.6 and fine-tuning started from a broken network.
"""
import math

import torch
from torch import fx, nn

from compress.select import engine, gfs


def _columns(channels, block, device):
    """Columns of the flattened weight that belong to ``channels``: a conv's k*k taps per channel are contiguous."""
    channels = torch.as_tensor(channels, dtype=torch.long, device=device)
    return (channels[:, None] * block + torch.arange(block, device=device)).flatten()


def _input_rows(module, inputs, rows, generator):
    """About ``rows`` input vectors of a consumer: its features (Linear) or k×k patches (conv), at random positions.

    Patches are unfolded a few images at a time, so memory stays bounded at any resolution.
    """
    if isinstance(module, nn.Linear):
        vectors = inputs.reshape(-1, inputs.shape[-1])
        return vectors[torch.randperm(len(vectors), generator=generator)[:rows].to(vectors.device)]
    if module.groups != 1 or module.padding_mode != "zeros" or isinstance(module.padding, str):
        raise NotImplementedError(f"least-squares re-fit of {module} (grouped or not zero-padded) is not supported")
    per_image = -(-rows // len(inputs))
    chunk = max(1, 2**24 // (inputs[0].numel() * math.prod(module.kernel_size)))
    samples = []
    for part in inputs.split(chunk):
        patches = nn.functional.unfold(part, module.kernel_size, module.dilation, module.padding, module.stride)
        picks = torch.rand(len(part), patches.shape[-1], generator=generator).argsort(1)[:, :per_image].to(patches.device)
        samples.append(patches.gather(2, picks[:, None].expand(-1, patches.shape[1], -1)).transpose(1, 2).flatten(0, 1))
    return torch.cat(samples)


@torch.no_grad()
def _sampled_inputs(model, names, images, rows, seed, chunk=256):
    """{consumer name: about ``rows`` of its input vectors over ``images``}, taken by hooks a chunk at a time.

    Only the sampled rows are kept, so memory stays bounded; a fresh generator per consumer picks the
    same positions in any network of the same input shapes (the pruned one and its unpruned reference).
    """
    generators = {name: torch.Generator().manual_seed(seed) for name in names}
    samples = {name: [] for name in names}
    per_chunk = -(-rows * min(chunk, len(images)) // len(images))

    def take(name):
        return lambda module, args: samples[name].append(_input_rows(module, args[0], per_chunk, generators[name]).double())

    handles = [model.get_submodule(name).register_forward_pre_hook(take(name)) for name in names]
    try:
        for part in images.split(chunk):
            model(part)
    finally:
        for handle in handles:
            handle.remove()
    return {name: torch.cat(rows) for name, rows in samples.items()}


def dropout_before(graph_module, consumer):
    """The rate of an ``nn.Dropout`` whose output ``consumer`` reads in ``graph_module``, else 0: training drops those
    inputs."""
    node = next(node for node in graph_module.graph.nodes if node.op == "call_module" and node.target == consumer)
    source = node.args[0]
    if isinstance(source, fx.Node) and source.op == "call_module":
        module = graph_module.get_submodule(source.target)
        if isinstance(module, nn.Dropout):
            return module.p
    return 0.0


@torch.no_grad()
def normal_equations(model, group, images, reference=None, rows=4096, ridge=1e-3, seed=0):
    """Per consumer of ``group``, its least-squares problem on ``images``, in float64.

    The inputs are sampled from ``model`` as it is now (earlier cuts and re-fits included). The target
    is the consumer's output in ``reference`` (the unpruned network, so errors upstream are repaired
    too), or in ``model`` itself with its current weights. The same images give the same rows.
    """
    inputs = _sampled_inputs(model, group.consumers, images, rows, seed)
    traced = model if isinstance(model, fx.GraphModule) else engine.trace(model)  # once, for every consumer's dropout
    reference_inputs = inputs if reference is None else _sampled_inputs(reference, group.consumers, images, rows, seed)
    systems = []
    for name in group.consumers:
        module, target_layer = model.get_submodule(name), (reference or model).get_submodule(name)
        samples = inputs[name]
        outputs = reference_inputs[name] @ target_layer.weight.detach().double().flatten(1).T
        bias = None
        if module.bias is not None:  # a re-fitted bias absorbs the means
            outputs = outputs + target_layer.bias.detach().double()
            bias = (outputs.mean(0), samples.mean(0))
            samples, outputs = samples - bias[1], outputs - bias[0]
        weight = module.weight.detach().double().flatten(1)
        gram = samples.T @ samples
        damping = ridge * gram.diagonal().mean()
        drop = dropout_before(traced, name)
        gram.diagonal().add_(damping + drop / (1 - drop) * (inputs[name]**2).sum(0))  # uncentred: dropout zeroes raw inputs
        systems.append({"name": name, "block": weight.shape[1] // group.width, "gram": gram,
                        "target": samples.T @ outputs + damping * weight.T, "energy": float((outputs**2).sum()),
                        "weight": weight, "bias": bias})
    return systems


def refit(system, kept):
    """(weight, bias) of the consumer re-fitted on channels ``kept``: flattened, full width, zero on the others."""
    columns = _columns(kept, system["block"], system["gram"].device)
    factor = torch.linalg.cholesky(system["gram"][columns[:, None], columns])
    weight = torch.zeros_like(system["weight"])
    weight[:, columns] = torch.cholesky_solve(system["target"][columns], factor).T
    if system["bias"] is None:
        return weight, None
    mean_output, mean_input = system["bias"]
    return weight, mean_output - weight @ mean_input


@torch.no_grad()
def write_refit(graph_module, systems, kept):
    """Put the re-fit on ``kept`` into the consumers' parameters: the group then computes its pruned function."""
    for system in systems:
        module = graph_module.get_submodule(system["name"])
        weight, bias = refit(system, kept)
        module.weight.copy_(weight.view_as(module.weight))
        if bias is not None:
            module.bias.copy_(bias)


def _gains(system, chosen, trial):
    """How much adding each channel of ``trial`` to ``chosen`` lowers the consumer's reconstruction error.

    One Cholesky factor of the kept set serves every candidate: a candidate's gain is rᵀM⁻¹r with
    M = G_cc - G_cS G_SS⁻¹ G_Sc (a k*k by k*k Schur complement) and r the part of its target the
    kept set leaves unexplained, instead of a full solve of size |S+c|*k*k per candidate.
    """
    gram, target, block = system["gram"], system["target"], system["block"]
    columns = _columns(trial, block, gram.device)
    own = columns.view(len(trial), block)
    schur = gram[own[:, :, None], own[:, None, :]]
    residual = target[own]
    if chosen:
        kept = _columns(chosen, block, gram.device)
        factor = torch.linalg.cholesky(gram[kept[:, None], kept])
        cross = gram[kept[:, None], columns]
        solved = torch.cholesky_solve(cross, factor)
        schur = schur - torch.bmm(cross.T.view(len(trial), block, -1), solved.T.view(len(trial), block, -1).transpose(1, 2))
        residual = residual - (cross.T @ torch.cholesky_solve(target[kept], factor)).view(residual.shape)
    return (residual * torch.linalg.solve(schur, residual)).sum((1, 2))


def local_order(systems, width, keep, candidates, generator, steps=None):
    """The first ``keep`` channels by greedy local imitation: least error summed over consumers, each relative to ||Y||².

    With ``steps``, a step adds its best ceil(keep / steps) candidates at once (as ``gfs.grow_to`` does).
    """
    def error_left(chosen, trial):  # lower is better: the gains, negated
        return -sum(_gains(system, chosen, trial.tolist()) / system["energy"] for system in systems)

    per_step = 1 if steps is None else max(1, math.ceil(keep / steps))
    chosen = []
    for chosen in gfs.greedy_steps(width, error_left, keep, candidates=candidates, per_step=per_step, generator=generator):
        pass
    return chosen


@torch.no_grad()
def refit_curve(graph_module, group, order, systems, heldout, ks):
    """Held-out loss/top-1 with the first k channels of ``order`` kept and the consumers re-fitted on them, per k."""
    images, labels, teacher = heldout
    cache = engine.record(graph_module, images, plan=engine.suffix(graph_module, group.consumers))
    modules = [graph_module.get_submodule(system["name"]) for system in systems]
    saved = [{key: value.clone() for key, value in module.state_dict().items()} for module in modules]
    curve = {"k": [], "loss": [], "top1": []}
    try:
        for k in ks:
            write_refit(graph_module, systems, order[:k])
            mask = torch.zeros(1, group.width, device=images.device)
            mask[0, order[:k]] = 1.0
            plan = engine.suffix(graph_module, group.consumers)  # the re-fit just written, folded into its BatchNorms
            loss, top1 = gfs.heldout_scores(graph_module, cache, labels, plan, mask, teacher)
            curve["k"].append(k)
            curve["loss"].append(float(loss))
            curve["top1"].append(float(top1))
    finally:
        for module, state in zip(modules, saved):
            module.load_state_dict(state)
    return curve
