"""The loss of ResNet-18 (small stem) over its first 20 steps from scratch on Fashion-MNIST, in plain PyTorch: SGD with
Nesterov momentum 0.9 at a constant learning rate, no warm-up, batch 128.

    python first_steps.py contig|cl LR     # contiguous or channels_last tensors
"""
import sys, torch
from torch import nn
from compress import data as datasets, zoo
fmt = {"cl": torch.channels_last, "contig": torch.contiguous_format}[sys.argv[1]]
lr = float(sys.argv[2])
torch.manual_seed(0)
data = datasets.load_data("fashion-mnist", None, stem="small", batch_size=128, train_limit=2560)
model = zoo.build_model("resnet18", 10, 1, "small").to(memory_format=fmt).train()
opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=4e-5)
losses = []
for step, (images, labels) in enumerate(data.train):
    images = images.float().div(255) if images.dtype == torch.uint8 else images
    images = images.to(memory_format=fmt) if images.dim() == 4 else images
    loss = nn.functional.cross_entropy(model(images), labels)
    opt.zero_grad(); loss.backward(); opt.step()
    losses.append(round(float(loss), 2))
print(sys.argv[1:], images.dtype, images.shape, float(images.mean()), float(images.std()), losses)
