"""PyTorch models for the benchmarks that run PyTorch beside tandem: the twins the tests compare
tandem's models against (tests/reference/torch_twins.py), with the input shape each benchmark
feeds them."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "reference"))
import torch_twins  # noqa: E402

# Input shape per sample (channels, height, width) for each model the benchmarks run.
INPUT_SHAPES = {
    "mlp": (1, 28, 28),
    "simple_cnn": (3, 32, 32),
    "lenet": (1, 28, 28),
    "resnet18": (3, 64, 64),
    "resnet50": (3, 64, 64),
}


def make(name):
    """(model, input shape per sample) for a tandem model name."""
    if name not in INPUT_SHAPES:
        raise SystemExit(f"unknown model {name} (expected one of {', '.join(INPUT_SHAPES)})")
    c, s, _ = INPUT_SHAPES[name]
    args = {"model": name, "in_channels": c, "image_size": s, "num_classes": 10}
    return torch_twins.make_model(args), INPUT_SHAPES[name]
