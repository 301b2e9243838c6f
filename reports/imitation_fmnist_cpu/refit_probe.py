"""Experiment: sequential selection at widths, with/without LS re-fit of consumers to the unpruned network's features."""
import copy, sys, time, json
import torch
from compress import budget, data as datasets, finetune, graph, macs
from compress.select import baselines, engine, gfs, imitation
from compress.select import _fold_uniform

torch.manual_seed(0)
variant, steps, cands, sel_batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
target = sys.argv[5] if len(sys.argv) > 5 else "0.25x"
recal_after = "norecal" not in variant
model, arch = graph.load_checkpoint("compress/assets/mbv2_fmnist_teacher.pt")
data = datasets.load_data("fashion-mnist", None, stem=arch["stem"], batch_size=256)
input_size = tuple(arch["input_size"])
full = macs.count_macs_params(model, input_size)[0]
widths, ratio = budget.uniform_widths(model, input_size, budget.resolve_target(target, "macs", full))
print("ratio", ratio, flush=True)

def rows_of(module, inputs, rows, seed):
    return imitation._input_rows(module, inputs, rows, torch.Generator().manual_seed(seed)).float()

@torch.no_grad()
def teacher_systems(gm, tgm, group, images, rows=4096, ridge=1e-3):
    cache, tcache = engine.record(gm, images), engine.record(tgm, images)
    nodes = {n.target: n for n in gm.graph.nodes if n.op == "call_module"}
    tnodes = {n.target: n for n in tgm.graph.nodes if n.op == "call_module"}
    systems = []
    for name in group.consumers:
        module, tmodule = gm.get_submodule(name), tgm.get_submodule(name)
        x = rows_of(module, cache[nodes[name].args[0]], rows, 0)
        xt = rows_of(tmodule, tcache[tnodes[name].args[0]], rows, 0)
        y = xt @ tmodule.weight.detach().flatten(1).T.float()
        if tmodule.bias is not None: y = y + tmodule.bias.float()
        mean_in = x.mean(0) if module.bias is not None else None
        xc = x if mean_in is None else x - mean_in
        yc = y if mean_in is None else y - y.mean(0)
        gram = (xc.T @ xc).double()
        gram.diagonal().add_(ridge * gram.diagonal().mean())
        weight = module.weight.detach().double().flatten(1)
        target = (xc.T @ yc).double()
        bias = None
        if module.bias is not None:
            # refit(): bias + (weight - new) @ mean == mean_y - new @ mean
            bias = ((y.mean(0).double() - weight @ mean_in.double()), mean_in.double())
        systems.append({"name": name, "block": weight.shape[1] // group.width, "gram": gram, "target": target,
                        "energy": float((yc ** 2).sum()), "weight": weight, "bias": bias})
    return systems

work = copy.deepcopy(model).eval().to(memory_format=torch.channels_last)
teacher = copy.deepcopy(model).eval().to(memory_format=torch.channels_last)
gm, tgm = engine.trace(work), engine.trace(teacher)
draw0 = datasets.batch_sampler(data, sel_batch, "cpu", torch.Generator().manual_seed(0))
use_kd = "kd" in variant
def draw():
    i, l = draw0()
    return i, l, (teacher(i) if use_kd else None)
refit_images, _ = datasets.heldout_batch(data, 256, "cpu", seed=1)
gen = torch.Generator().manual_seed(0)
keep = {}
t0 = time.perf_counter()
groups = graph.list_groups(work, input_size)
for group in groups:
    k = widths.get(group.id, group.width)
    if k >= group.width: continue
    g0 = time.perf_counter()
    if variant.startswith("l1"):
        chosen = baselines.order_by(baselines.l1_scores(work, group))[:k]
        chosen = [int(c) for c in chosen]
    else:
        chosen = gfs.grow_to(gm, group, draw, k, candidates=cands, steps=steps, generator=gen)
    _fold_uniform(work, group, chosen, {})  # into the readers themselves, as the code did when this was measured
    if "refit" in variant:
        systems = teacher_systems(gm, tgm, group, refit_images)
        imitation.write_refit(gm, systems, chosen)
    if recal_after:
        finetune.recalibrate_bn(work, data, "cpu", batches=2); work.eval()
    keep[group.id] = chosen
    print(f"{group.id} {group.width}->{k} {time.perf_counter()-g0:.1f}s", flush=True)
sel = time.perf_counter() - t0
pruned = graph.prune(copy.deepcopy(work).contiguous() if False else copy.deepcopy(work), input_size, keep)
one = finetune.evaluate(pruned, data, "cpu")["top1"]
finetune.recalibrate_bn(pruned, data, "cpu", batches=8)
re = finetune.evaluate(pruned, data, "cpu")["top1"]
print(json.dumps(dict(variant=variant, steps=steps, cands=cands, batch=sel_batch, target=target, sel_s=round(sel,1), one_shot=one, bn_re=re)), flush=True)
