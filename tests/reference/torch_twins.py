"""PyTorch twins of tandem's named models: the same structure and parameter names, built from the
same options (make_model mirrors tandem's make_model). Used by the reference cases and by the
benchmarks that run PyTorch beside tandem.

Debian's python3-torch comes without torchvision, so ResNet-18/50 are written out below with
torchvision.models.resnet's exact structure and names (v1.5: Bottleneck strides on its 3x3 conv).
"""
import torch
from torch import nn
import torch.nn.functional as F


def mlp(inputs=784, hidden=(512, 512), classes=10):
    layers = [nn.Flatten()]
    last = inputs
    for h in hidden:
        layers += [nn.Linear(last, h), nn.ReLU()]
        last = h
    layers.append(nn.Linear(last, classes))
    return nn.Sequential(*layers)


class TwoStageCNN(nn.Module):
    """simple_cnn (k=3, fc 512, dropout 0.5) and lenet (k=5, fc 1024, dropout 0.4)."""

    def __init__(self, in_channels, image_size, kernel, hidden, classes, p):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 32, kernel, padding=kernel // 2)
        self.conv2 = nn.Conv2d(32, 64, kernel, padding=kernel // 2)
        side = image_size // 4
        self.fc1 = nn.Linear(64 * side * side, hidden)
        self.fc2 = nn.Linear(hidden, classes)
        self.dropout = nn.Dropout(p)

    def forward(self, x):
        x = F.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = F.max_pool2d(torch.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        return self.fc2(self.dropout(torch.relu(self.fc1(x))))


def conv3x3(in_planes, out_planes, stride=1):
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes, out_planes, stride=1):
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        width = planes
        self.conv1 = conv1x1(inplanes, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        return self.relu(out + identity)


class ResNet(nn.Module):
    def __init__(self, block, layers, in_channels=3, num_classes=1000):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _make_layer(self, block, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(conv1x1(self.inplanes, planes * block.expansion, stride),
                                       nn.BatchNorm2d(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        for _ in range(1, blocks):
            layers.append(block(self.inplanes, planes))
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def make_model(args):
    """The twin of tandem's make_model(name, ModelOptions) for the same options."""
    name = args["model"]
    c, s, k = args.get("in_channels", 0), args.get("image_size", 0), args.get("num_classes", 10)
    if name == "mlp":
        n = args.get("mlp_in_features", 0) or (c * s * s if c and s else 784)
        return mlp(n, args.get("mlp_hidden", [512, 512]), k)
    if name == "simple_cnn":
        return TwoStageCNN(c or 3, s or 32, 3, 512, k, 0.5)
    if name == "lenet":
        return TwoStageCNN(c or 1, s or 28, 5, 1024, k, 0.4)
    if name == "resnet18":
        return ResNet(BasicBlock, [2, 2, 2, 2], c or 3, k)
    if name == "resnet50":
        return ResNet(Bottleneck, [3, 4, 6, 3], c or 3, k)
    raise SystemExit(f"unknown model {name}")
