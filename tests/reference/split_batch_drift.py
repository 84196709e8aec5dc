#!/usr/bin/python3
"""How far PyTorch itself drifts when one batch is trained as averaged shards (DDP's math).

LeNet (tandem's `lenet` without dropout) on the first 640 Fashion-MNIST training images, 20 steps of
SGD (lr 0.01, momentum 0.9) or Adam (lr 2e-4) at a global batch of 32: once on the whole batch, once
as 2 and as 4 shards whose gradients are averaged. Prints the largest parameter difference, in f32
and in f64. This is the reference behind tests/multiprocess/ddp_matrix.sh's choice to bound DDP
against one process in fp64 and to assert bit-identity, not a bound, in f32.

    /usr/bin/python3 tests/reference/split_batch_drift.py
"""
import gzip

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

DATA = "/usr/share/datasets/fashion-mnist"


def load(name, offset):
    with gzip.open(f"{DATA}/{name}") as f:
        return np.frombuffer(f.read(), np.uint8, offset=offset)


class LeNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 5, padding=2)
        self.conv2 = nn.Conv2d(32, 64, 5, padding=2)
        self.fc1 = nn.Linear(3136, 1024)
        self.fc2 = nn.Linear(1024, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


def train(images, labels, shards, dtype, optimizer):
    torch.manual_seed(0)
    model = LeNet().to(dtype)
    if optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=2e-4)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    per = 32 // shards
    for step in range(20):
        x = torch.from_numpy(images[step * 32:(step + 1) * 32]).to(dtype)
        y = torch.from_numpy(labels[step * 32:(step + 1) * 32])
        total = None
        for s in range(shards):
            model.zero_grad()
            F.cross_entropy(model(x[s * per:(s + 1) * per]), y[s * per:(s + 1) * per]).backward()
            grads = [p.grad.clone() for p in model.parameters()]
            total = grads if total is None else [a + b for a, b in zip(total, grads)]
        for p, g in zip(model.parameters(), total):
            p.grad = g / shards
        opt.step()
    return [p.detach().double() for p in model.parameters()]


def main():
    torch.set_num_threads(1)
    images = load("train-images-idx3-ubyte.gz", 16)[:640 * 784]
    images = images.reshape(-1, 1, 28, 28).astype(np.float32) / 255.0
    labels = load("train-labels-idx1-ubyte.gz", 8)[:640].astype(np.int64)
    for dtype in (torch.float32, torch.float64):
        for optimizer in ("sgd", "adam"):
            base = train(images, labels, 1, dtype, optimizer)
            for shards in (2, 4):
                w = train(images, labels, shards, dtype, optimizer)
                worst = max(float((a - b).abs().max()) for a, b in zip(w, base))
                print(f"{str(dtype):14s} {optimizer:4s} {shards} shards: max |w - w_one_batch| = {worst:.3e}")


if __name__ == "__main__":
    main()
