"""PyTorch twins of tandem's named models (same layers, same parameter names), for benchmarks."""
import torch
from torch import nn


class SimpleCNN(nn.Module):
    """The CIFAR CNN of docs/DESIGN.md section 2.3 (tandem's `simple_cnn`)."""

    def __init__(self, in_channels=3, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.fc1 = nn.Linear(64 * 8 * 8, 512)
        self.fc2 = nn.Linear(512, num_classes)
        self.dropout = nn.Dropout(0.5)

    def forward(self, x):
        x = nn.functional.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = nn.functional.max_pool2d(torch.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        return self.fc2(self.dropout(torch.relu(self.fc1(x))))


class LeNet(nn.Module):
    """TensorFlow's layers-tutorial convnet for 1x28x28 (tandem's `lenet`)."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 5, padding=2)
        self.conv2 = nn.Conv2d(32, 64, 5, padding=2)
        self.fc1 = nn.Linear(7 * 7 * 64, 1024)
        self.fc2 = nn.Linear(1024, num_classes)
        self.dropout = nn.Dropout(0.4)

    def forward(self, x):
        x = nn.functional.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = nn.functional.max_pool2d(torch.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        return self.fc2(self.dropout(torch.relu(self.fc1(x))))


def mlp(inputs=784, hidden=(512, 512), classes=10):
    layers = [nn.Flatten()]
    last = inputs
    for h in hidden:
        layers += [nn.Linear(last, h), nn.ReLU()]
        last = h
    layers.append(nn.Linear(last, classes))
    return nn.Sequential(*layers)


def make(name):
    """(model, input shape per sample) for a tandem model name."""
    if name == "mlp":
        return mlp(), (1, 28, 28)
    if name == "simple_cnn":
        return SimpleCNN(), (3, 32, 32)
    if name == "lenet":
        return LeNet(), (1, 28, 28)
    if name in ("resnet18", "resnet50"):
        import torchvision  # noqa: only needed for these
        return getattr(torchvision.models, name)(num_classes=10), (3, 64, 64)
    raise SystemExit(f"unknown model {name}")
