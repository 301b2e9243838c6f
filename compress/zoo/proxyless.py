"""ProxylessNAS (Cai et al., ICLR 2019): the searched GPU, mobile and CPU networks.

Not in torchvision or timm, so defined here from the published architecture, laid out like
torchvision's MobileNetV2 (``features`` then ``classifier``) so the rest of the toolkit treats
both alike. Block = optional 1x1 expand + BN + ReLU6, kxk depthwise + BN + ReLU6, 1x1 project +
BN; residual when stride 1 and in == out. Zero blocks of the searched space are simply absent.
"""
from functools import partial

from torch import nn

BatchNorm = partial(nn.BatchNorm2d, eps=1e-3)

# Per stage: (output channels, stride of its first block, [(expand ratio, kernel), ...]); None = zero block.
GPU = (40, 24, [
    (32, 2, [(3, 5), None, None, None]),
    (56, 2, [(3, 7), None, None, (3, 3)]),
    (112, 2, [(6, 7), None, None, (3, 5)]),
    (128, 1, [(6, 5), None, (3, 3), (3, 5)]),
    (256, 2, [(6, 7), (6, 7), (6, 7), (6, 5)]),
    (432, 1, [(6, 7)]),
], 1728)
MOBILE = (32, 16, [
    (32, 2, [(3, 5), (3, 3), None, None]),
    (40, 2, [(3, 7), (3, 3), (3, 5), (3, 5)]),
    (80, 2, [(6, 7), (3, 5), (3, 5), (3, 5)]),
    (96, 1, [(6, 5), (3, 5), (3, 5), (3, 5)]),
    (192, 2, [(6, 7), (6, 7), (3, 7), (3, 7)]),
    (320, 1, [(6, 7)]),
], 1280)
CPU = (40, 24, [
    (32, 2, [(6, 3), (3, 3), (3, 3), (3, 3)]),
    (48, 2, [(6, 3), (3, 3), (3, 3), (3, 5)]),
    (88, 2, [(6, 3), None, None, (3, 3)]),
    (104, 1, [(6, 5), (3, 3), (3, 3), (3, 3)]),
    (216, 2, [(6, 5), (3, 5), (3, 5), (3, 3)]),
    (360, 1, [(6, 5)]),
], 1432)


def conv_bn(in_channels, out_channels, kernel, stride=1, groups=1, activation=True):
    layers = [nn.Conv2d(in_channels, out_channels, kernel, stride, kernel // 2, groups=groups, bias=False), BatchNorm(out_channels)]
    return nn.Sequential(*layers, nn.ReLU6(inplace=True)) if activation else nn.Sequential(*layers)


class MBConv(nn.Module):
    """Inverted residual: expand (skipped at ratio 1), depthwise, linear project."""

    def __init__(self, in_channels, out_channels, stride, expand_ratio, kernel):
        super().__init__()
        hidden = in_channels * expand_ratio
        layers = [conv_bn(in_channels, hidden, 1)] if expand_ratio != 1 else []
        layers += [conv_bn(hidden, hidden, kernel, stride, groups=hidden), conv_bn(hidden, out_channels, 1, activation=False)]
        self.conv = nn.Sequential(*layers)
        self.use_residual = stride == 1 and in_channels == out_channels

    def forward(self, x):
        return x + self.conv(x) if self.use_residual else self.conv(x)


class ProxylessNAS(nn.Module):
    def __init__(self, config, num_classes=1000, in_chans=3, dropout=0.0):
        super().__init__()
        stem_channels, first_channels, stages, head_channels = config
        layers = [conv_bn(in_chans, stem_channels, 3, stride=2), MBConv(stem_channels, first_channels, 1, 1, 3)]
        channels = first_channels
        for out_channels, stride, blocks in stages:
            for index, block in enumerate(blocks):
                if block is None:
                    continue
                expand_ratio, kernel = block
                layers.append(MBConv(channels, out_channels, stride if index == 0 else 1, expand_ratio, kernel))
                channels = out_channels
        layers.append(conv_bn(channels, head_channels, 1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(head_channels, num_classes))
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0, 0.01)
                nn.init.zeros_(module.bias)

    def forward(self, x):
        x = nn.functional.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(x.flatten(1))


def proxyless_gpu(num_classes=1000, in_chans=3):
    return ProxylessNAS(GPU, num_classes, in_chans)


def proxyless_mobile(num_classes=1000, in_chans=3):
    return ProxylessNAS(MOBILE, num_classes, in_chans)


def proxyless_cpu(num_classes=1000, in_chans=3):
    return ProxylessNAS(CPU, num_classes, in_chans)
