"""PyTorch definitions of ssl's ResNets, under torchvision's tensor names, so that a backbone
written by `ssl export RUN --format torch` loads with `load_state_dict(strict=True)`:

    import safetensors.torch, torch_models
    model = torch_models.small_fmnist_e512()
    model.load_state_dict(safetensors.torch.load_file("backbone_torch.safetensors"))
    features = model.eval()(images)  # images [N, C, H, W], normalised as ssl does; [N, F]

The file's metadata (`safetensors.safe_open(path, "pt").metadata()`) names the model, this
definition, the method and the run. The four standard ResNets are torchvision's with ssl's
stem: for small images (`*_cifar`) a 3x3 stride-1 convolution and no max-pool, as solo-learn
and lightly do; the ImageNet stem as torchvision has it. `torchvision_model(name)` builds them
from torchvision itself. `small_fmnist*` are the same blocks at 32, 64 and 128 channels on
one input channel. No classifier: the module returns the pooled features. Copy this file
freely; it needs only torch (and torchvision for `torchvision_model`).
"""
from torch import nn


class BasicBlock(nn.Module):
    """torchvision's BasicBlock: two 3x3 convolutions, a 1x1 projection shortcut when the
    shape changes."""

    expansion = 1

    def __init__(self, inplanes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """torchvision's Bottleneck (stride on the 3x3, "ResNet v1.5"): 1x1 down, 3x3, 1x1 up to
    4x the width."""

    expansion = 4

    def __init__(self, inplanes, planes, stride=1):
        super().__init__()
        out = planes * self.expansion
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or inplanes != out:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, out, 1, stride, bias=False), nn.BatchNorm2d(out))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """A ResNet feature extractor: stem (`conv1`, `bn1`, ReLU, max-pool for the ImageNet
    stem), stages `layer1`... (the first at stride 1, the others halving the resolution),
    an optional 1x1 expansion with BatchNorm and ReLU (`expand`), global average pooling."""

    def __init__(self, block, layers, widths, in_channels=3, stem="cifar", expand=None):
        super().__init__()
        if stem == "cifar":
            self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
            self.maxpool = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(in_channels, widths[0], 7, 2, 3, bias=False)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        inplanes = widths[0]
        for i, (blocks, width) in enumerate(zip(layers, widths)):
            stage = [block(inplanes, width, 1 if i == 0 else 2)]
            inplanes = width * block.expansion
            stage += [block(inplanes, width) for _ in range(blocks - 1)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*stage))
        self.stages = len(layers)
        self.expand = None
        if expand:
            self.expand = nn.Sequential(nn.Conv2d(inplanes, expand, 1, bias=False), nn.BatchNorm2d(expand), nn.ReLU(inplace=True))
        self.avgpool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(self.stages):
            x = getattr(self, f"layer{i + 1}")(x)
        if self.expand is not None:
            x = self.expand(x)
        return self.avgpool(x).flatten(1)


def resnet18_cifar():
    return ResNet(BasicBlock, [2, 2, 2, 2], [64, 128, 256, 512])


def resnet34_cifar():
    return ResNet(BasicBlock, [3, 4, 6, 3], [64, 128, 256, 512])


def resnet50_cifar():
    return ResNet(Bottleneck, [3, 4, 6, 3], [64, 128, 256, 512])


def resnet18_imagenet():
    return ResNet(BasicBlock, [2, 2, 2, 2], [64, 128, 256, 512], stem="imagenet")


def small_fmnist():
    return ResNet(BasicBlock, [1, 2, 2], [32, 64, 128], in_channels=1)


def small_fmnist_e512():
    return ResNet(BasicBlock, [1, 2, 2], [32, 64, 128], in_channels=1, expand=512)


MODELS = {f.__name__: f for f in [resnet18_cifar, resnet34_cifar, resnet50_cifar, resnet18_imagenet, small_fmnist, small_fmnist_e512]}


def torchvision_model(name):
    """The same network from torchvision (the standard ResNets only): the stem changed for
    the `*_cifar` models, the classifier removed."""
    import torchvision

    arch = {"resnet18_cifar": "resnet18", "resnet34_cifar": "resnet34", "resnet50_cifar": "resnet50", "resnet18_imagenet": "resnet18"}[name]
    model = getattr(torchvision.models, arch)(weights=None)
    if name.endswith("_cifar"):
        model.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        model.maxpool = nn.Identity()
    model.fc = nn.Identity()
    return model
