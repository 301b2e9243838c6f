"""Where does imitation's one-shot lead go in the first fine-tuning steps? Loss with eval vs training BN, then per 10 SGD steps.

    python reports/imitation_dropout_cpu/first_steps_probe.py PRUNED.pt [PRUNED.pt ...]
"""
import copy, sys, torch
from torch import nn
from compress import data as datasets, finetune, graph
torch.set_num_threads(1)
torch.manual_seed(0)
data = datasets.load_data("fashion-mnist", None, stem="small", batch_size=128)
batches = []
for i, (x, y) in enumerate(data.train):
    batches.append((x, y))
    if len(batches) == 60:
        break
crit = nn.CrossEntropyLoss()
for path in sys.argv[1:]:
    model, _ = graph.load_checkpoint(path)
    model = model.to(memory_format=torch.channels_last)
    with torch.no_grad():
        model.eval(); ev = [crit(model(finetune._inputs(data, x, torch.device("cpu"), True)), y).item() for x, y in batches[:10]]
        m2 = copy.deepcopy(model).train(); tr = [crit(m2(finetune._inputs(data, x, torch.device("cpu"), True)), y).item() for x, y in batches[:10]]
    print(path, f"eval-BN loss {sum(ev)/10:.3f}  train-BN loss {sum(tr)/10:.3f}")
    opt = torch.optim.SGD(finetune._parameter_groups(model, 5e-4), lr=0.03, momentum=0.9, nesterov=True)
    total, warm = 469, 94
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: finetune.warmup_cosine(s, total, warm))
    model.train(); losses = []
    for step, (x, y) in enumerate(batches):
        loss = crit(model(finetune._inputs(data, x, torch.device("cpu"), True)), y)
        opt.zero_grad(); loss.backward(); opt.step(); sched.step(); losses.append(loss.item())
    print("  loss per 10 steps:", [round(sum(losses[i:i+10])/10, 3) for i in range(0, 60, 10)])
