#!/usr/bin/python3
"""PyTorch models exported to ONNX for the ONNX import tests, and hand-built graphs.

usage:
  onnx_models.py export NAME OUT.onnx [--opset N] [--mode train|eval] [--size S] [--classes K]
                 [--in-channels C] [--seed S] [--fixed-batch]
  onnx_models.py graph KIND OUT.onnx      hand-built graphs: unsupported_op, nhwc_dense, misc_ops

NAME: resnet18 (torchvision's), skip_cnn (a small CNN with a skip connection, batch norm, leaky
ReLU, a view(N, -1) reshape, dropout and log-softmax) or tiny_cnn (for training end to end).
Weights come from torch.manual_seed(seed); the tests compare tandem against the same nn.Module
rebuilt by build(NAME) with tandem's state loaded into it.
"""
import argparse
import sys

import torch
from torch import nn
import torch.nn.functional as F


class SkipCNN(nn.Module):
    def __init__(self, in_channels=3, size=16, classes=10, dropout=0.0):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.gate = nn.Conv2d(8, 8, 1)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(8 * (size // 2) * (size // 2), classes)

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        y = F.leaky_relu(self.conv2(y), 0.1) + y                   # the skip connection
        y = y * torch.sigmoid(self.gate(y)) + 0.5 * torch.tanh(y)  # a gate
        y = F.avg_pool2d(self.pool(y), 1)
        y = y.view(y.size(0), -1)
        return torch.log_softmax(self.fc(self.drop(y)), 1)


class TinyCNN(nn.Module):
    def __init__(self, in_channels=3, size=32, classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 16, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 16, 3, padding=1)
        self.fc = nn.Linear(16, classes)

    def forward(self, x):
        y = F.max_pool2d(torch.relu(self.bn1(self.conv1(x))), 2)
        y = torch.relu(self.conv2(y)) + y
        y = F.adaptive_avg_pool2d(y, 1)
        return self.fc(torch.flatten(y, 1))


def build(name, size=16, classes=10, in_channels=3):
    if name == "resnet18":
        import torchvision
        m = torchvision.models.resnet18(num_classes=classes)
        if in_channels != 3:
            m.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        return m
    if name == "skip_cnn":
        return SkipCNN(in_channels, size, classes)
    if name == "tiny_cnn":
        return TinyCNN(in_channels, size, classes)
    sys.exit(f"unknown model {name}")


def export(args):
    torch.manual_seed(args.seed)
    m = build(args.name, args.size, args.classes, args.in_channels)
    train = args.mode == "train"
    m.train(train)
    x = torch.randn(2, args.in_channels, args.size, args.size)
    axes = None if args.fixed_batch else {"input": {0: "batch"}, "logits": {0: "batch"}}
    torch.onnx.export(m, x, args.out, opset_version=args.opset,
                      training=torch.onnx.TrainingMode.TRAINING if train
                      else torch.onnx.TrainingMode.EVAL,
                      do_constant_folding=False, input_names=["input"],
                      output_names=["logits"], dynamic_axes=axes)


def graph(args):
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper, TensorProto
    rng = np.random.default_rng(3)
    if args.kind == "unsupported_op":
        # A conv, then an operator tandem does not have (Erf), then a flatten.
        w = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "conv.weight")
        nodes = [helper.make_node("Conv", ["input", "conv.weight"], ["c"], name="conv", pads=[1, 1, 1, 1]),
                 helper.make_node("Erf", ["c"], ["e"], name="the_erf"),
                 helper.make_node("GlobalAveragePool", ["e"], ["g"], name="gap"),
                 helper.make_node("Flatten", ["g"], ["logits"], name="flat")]
        inits = [w]
        inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 8, 8])
        out = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 4])
    elif args.kind == "nhwc_dense":
        # What tf2onnx writes for a small Keras model: NHWC input, a transpose to NCHW, conv with
        # SAME_UPPER padding and stride 2, ReduceMean over H and W, MatMul + Add (a Dense layer),
        # Softmax.
        w = rng.standard_normal((6, 3, 3, 3)).astype(np.float32) * 0.3
        b = rng.standard_normal((6,)).astype(np.float32) * 0.1
        dw = rng.standard_normal((6, 5)).astype(np.float32) * 0.5
        db = rng.standard_normal((5,)).astype(np.float32) * 0.1
        inits = [numpy_helper.from_array(w, "sequential/conv2d/kernel"),
                 numpy_helper.from_array(b, "sequential/conv2d/bias"),
                 numpy_helper.from_array(dw, "sequential/dense/kernel"),
                 numpy_helper.from_array(db, "sequential/dense/bias")]
        nodes = [helper.make_node("Transpose", ["input"], ["t"], name="to_nchw", perm=[0, 3, 1, 2]),
                 helper.make_node("Conv", ["t", "sequential/conv2d/kernel", "sequential/conv2d/bias"],
                                  ["c"], name="conv2d", strides=[2, 2], auto_pad="SAME_UPPER",
                                  kernel_shape=[3, 3]),
                 helper.make_node("Relu", ["c"], ["r"], name="relu"),
                 helper.make_node("ReduceMean", ["r"], ["m"], name="gap", axes=[2, 3], keepdims=0),
                 helper.make_node("MatMul", ["m", "sequential/dense/kernel"], ["mm"], name="dense"),
                 helper.make_node("Add", ["mm", "sequential/dense/bias"], ["d"], name="dense_bias"),
                 helper.make_node("Softmax", ["d"], ["logits"], name="softmax", axis=-1)]
        inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["unk__1", 9, 10, 3])
        out = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["unk__2", 5])
    elif args.kind == "misc_ops":
        # Operators the exports above do not use, or use one way only: Identity, Sub, Div,
        # Concat of activations, MaxPool with asymmetric pads, AveragePool without padding, Gemm
        # with alpha/beta and an untransposed B, Unsqueeze/Squeeze, Gather of columns, Softmax.
        inits = [numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32) * 0.3, "w1"),
                 numpy_helper.from_array(rng.standard_normal((1, 4, 1, 1)).astype(np.float32), "shift"),
                 numpy_helper.from_array(rng.standard_normal((32, 6)).astype(np.float32) * 0.3, "w2"),
                 numpy_helper.from_array(rng.standard_normal((6,)).astype(np.float32), "c2"),
                 numpy_helper.from_array(np.array([1], np.int64), "axis1"),
                 numpy_helper.from_array(np.array([0, 2, 4, 1, 3, 5], np.int64), "order")]
        two = helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])
        nodes = [helper.make_node("Conv", ["input", "w1"], ["a"], name="conv", pads=[1, 1, 1, 1]),
                 helper.make_node("Identity", ["a"], ["b"], name="identity"),
                 helper.make_node("Sub", ["b", "shift"], ["c"], name="sub"),
                 helper.make_node("Constant", [], ["two"], name="two", value=two),
                 helper.make_node("Div", ["c", "two"], ["d"], name="div"),
                 helper.make_node("Concat", ["d", "a"], ["e"], name="concat", axis=1),
                 helper.make_node("MaxPool", ["e"], ["f"], name="maxpool", kernel_shape=[3, 3],
                                  strides=[2, 2], pads=[0, 0, 1, 1]),
                 helper.make_node("AveragePool", ["f"], ["g"], name="avgpool", kernel_shape=[2, 2],
                                  strides=[2, 2]),
                 helper.make_node("Flatten", ["g"], ["h"], name="flatten"),
                 helper.make_node("Gemm", ["h", "w2", "c2"], ["i"], name="gemm", alpha=0.5, beta=2.0),
                 helper.make_node("Unsqueeze", ["i", "axis1"], ["j"], name="unsqueeze"),
                 helper.make_node("Squeeze", ["j", "axis1"], ["k"], name="squeeze"),
                 helper.make_node("Gather", ["k", "order"], ["l"], name="gather", axis=1),
                 helper.make_node("Softmax", ["l"], ["logits"], name="softmax", axis=1)]
        inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 8, 8])
        out = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 6])
    else:
        sys.exit(f"unknown graph {args.kind}")
    g = helper.make_graph(nodes, args.kind, [inp], [out], inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)],
                              producer_name="tf2onnx" if args.kind == "nhwc_dense" else "test")
    onnx.checker.check_model(model)
    onnx.save(model, args.out)


def nhwc_dense_reference(x_nchw, state):
    """The nhwc_dense graph in torch, on NCHW samples (tandem transposes them to NHWC first)."""
    # SAME_UPPER, stride 2, kernel 3: 9 rows need 2 padding rows (1 + 1), 10 columns 1 (0 + 1).
    y = F.pad(x_nchw, (0, 1, 1, 1))
    y = F.conv2d(y, state["sequential/conv2d/kernel"], state["sequential/conv2d/bias"], stride=2)
    y = torch.relu(y).mean((2, 3))
    return torch.softmax(y @ state["sequential/dense/kernel"] + state["sequential/dense/bias"], -1)


def misc_ops_reference(x, state):
    """The misc_ops graph in torch."""
    a = F.conv2d(x, state["w1"], padding=1)
    e = torch.cat([(a - state["shift"]) / 2.0, a], 1)
    f = F.max_pool2d(F.pad(e, (0, 1, 0, 1), value=float("-inf")), 3, 2)
    h = torch.flatten(F.avg_pool2d(f, 2, 2), 1)
    i = 0.5 * (h @ state["w2"]) + 2.0 * state["c2"]
    return torch.softmax(i[:, [0, 2, 4, 1, 3, 5]], 1)


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export")
    e.add_argument("name")
    e.add_argument("out")
    e.add_argument("--opset", type=int, default=17)
    e.add_argument("--mode", choices=["train", "eval"], default="train")
    e.add_argument("--size", type=int, default=16)
    e.add_argument("--classes", type=int, default=10)
    e.add_argument("--in-channels", type=int, default=3)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--fixed-batch", action="store_true")
    g = sub.add_parser("graph")
    g.add_argument("kind")
    g.add_argument("out")
    args = p.parse_args()
    import warnings
    warnings.filterwarnings("ignore")
    export(args) if args.cmd == "export" else graph(args)


if __name__ == "__main__":
    main()
