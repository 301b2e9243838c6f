"""Re-fit only the classifier of a pruned network to the teacher's logits, without and with the dropout term.

    python reports/imitation_dropout_cpu/classifier_refit_probe.py PRUNED.pt [OUT.pt: the dropout-aware re-fit, saved]
"""
import copy, sys, torch
from torch import nn
from compress import data as datasets, finetune, graph
torch.set_num_threads(1)
torch.manual_seed(0)
data = datasets.load_data("fashion-mnist", None, stem="small", batch_size=250)
imgs = []
for i, (x, y) in enumerate(data.train):
    imgs.append((finetune._inputs(data, x, torch.device("cpu"), False), y))
    if i == 7: break
X = torch.cat([a for a, _ in imgs]); Y = torch.cat([b for _, b in imgs])
teacher, _ = graph.load_checkpoint("compress/assets/mbv2_fmnist_teacher.pt"); teacher.eval()
model, _ = graph.load_checkpoint(sys.argv[1]); model.eval()
lin = model.classifier[-1]
feats = []
h = lin.register_forward_pre_hook(lambda m, a: feats.append(a[0].double()))
with torch.no_grad():
    T = teacher(X).double(); model(X)
h.remove()
F = feats[0]
crit = nn.CrossEntropyLoss()
def losses(m):
    with torch.no_grad():
        m.eval(); e = crit(m(X[:1000]), Y[:1000]).item()
        m.train(); torch.manual_seed(1); t = crit(m(X[:1000]), Y[:1000]).item(); m.eval()
    return e, t
print("as selected: eval/train loss", losses(model), "|W|", lin.weight.norm().item())
for p in [0.0, 0.2]:
    mu, tm = F.mean(0), T.mean(0)
    Fc, Tc = F - mu, T - tm
    G = Fc.T @ Fc
    G.diagonal().add_(1e-3 * G.diagonal().mean() + p / (1 - p) * (F**2).sum(0))
    W = torch.linalg.solve(G, Fc.T @ Tc).T
    b = tm - W @ mu
    m2 = copy.deepcopy(model); m2.classifier[-1].weight.data = W.float(); m2.classifier[-1].bias.data = b.float()
    print(f"refit p={p}: eval/train loss", losses(m2), "|W|", W.norm().item(), "test top-1", finetune.evaluate(m2, data, "cpu")["top1"])
    if p > 0 and len(sys.argv) > 2:
        graph.save_pruned(sys.argv[2], m2, graph.read_checkpoint(sys.argv[1])["arch"])
