#!/usr/bin/env python3
"""ResNet-50 training on one GPU: tandem (benchmarks/resnet50_gpu) against PyTorch eager
(torchvision's resnet50, as written out in tests/reference/torch_twins.py, so torchvision need
not be installed), side by side in one invocation on the same GPU.

Both train on synthetic 3x224x224 batches already on the device with SGD (momentum 0.9, weight
decay 1e-4), cross-entropy over 1000 classes; PyTorch runs channels-last with
torch.backends.cudnn.benchmark = True (the issue's reference setting). Precision: fp32 (TF32
off in both), tf32 (TF32 on in both), bf16/fp16 (autocast in both: tandem casts convolutions and
matmuls, torch.autocast more ops; fp16 with a loss scale). Each side runs in its own
process, alternating, --rounds times; the table shows medians of images/s and of peak memory
(PyTorch: torch.cuda.max_memory_reserved; tandem: its caching allocator's peak reserved bytes).

usage: benchmarks/compare_pytorch_gpu.py [--build build] [--configs fp32:64,tf32:64,bf16:256]
                                         [--steps 30] [--warmup 5] [--rounds 3]
"""
import argparse
import os
import statistics
import subprocess
import sys

TORCH_SCRIPT = r"""
import sys, time, torch
batch, precision, steps, warmup = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
sys.path.insert(0, sys.argv[5])
import torch_twins
torch.backends.cudnn.benchmark = True
tf32 = precision == "tf32"
torch.backends.cuda.matmul.allow_tf32 = tf32
torch.backends.cudnn.allow_tf32 = tf32
dev = torch.device("cuda:0")
model = torch_twins.make_model({"model": "resnet50", "in_channels": 3, "num_classes": 1000})
model = model.to(dev).to(memory_format=torch.channels_last)
opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
x = torch.randn(batch, 3, 224, 224, device=dev).to(memory_format=torch.channels_last)
y = torch.arange(batch, device=dev) % 1000
amp = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
scaler = torch.cuda.amp.GradScaler(enabled=precision == "fp16")
def step():
    opt.zero_grad(set_to_none=True)
    with torch.autocast("cuda", dtype=amp or torch.float32, enabled=amp is not None):
        loss = torch.nn.functional.cross_entropy(model(x), y)
    scaler.scale(loss).backward()
    scaler.step(opt)
    scaler.update()
    return loss
for _ in range(warmup):
    step()
torch.cuda.synchronize()
torch.cuda.reset_peak_memory_stats()
t0 = time.perf_counter()
for _ in range(steps):
    loss = step()
loss.item()
torch.cuda.synchronize()
s = time.perf_counter() - t0
print(f"images_per_sec={batch * steps / s:.2f} peak_mb={torch.cuda.max_memory_reserved() / 2**20:.1f}")
"""


def parse_last(out):
    last = out.strip().splitlines()[-1]
    fields = dict(kv.split("=") for kv in last.split())
    return float(fields["images_per_sec"]), float(fields["peak_mb"])


def run_tandem(binary, batch, precision, steps, warmup):
    out = subprocess.run([binary, "--batch", str(batch), "--precision", precision, "--steps",
                          str(steps), "--warmup", str(warmup)],
                         check=True, capture_output=True, text=True).stdout
    return parse_last(out)


def run_torch(batch, precision, steps, warmup):
    reference = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "reference")
    out = subprocess.run([sys.executable, "-c", TORCH_SCRIPT, str(batch), precision, str(steps),
                          str(warmup), reference], check=True, capture_output=True, text=True).stdout
    return parse_last(out)


def median_of(results, k):
    vals = [r[k] for r in results if r is not None]
    return statistics.median(vals) if vals else None


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--build", default=os.path.join(here, "..", "build"))
    p.add_argument("--configs", default="fp32:64,tf32:64,bf16:256",
                   help="comma-separated precision:batch pairs")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args()
    binary = os.path.join(a.build, "benchmarks", "resnet50_gpu")
    if not os.path.exists(binary):
        sys.exit(f"compare_pytorch_gpu: {binary} not found; build with -DTANDEM_CUDA=ON "
                 "and the `benchmarks` target")
    try:
        import torch  # noqa: F401
    except ImportError as e:
        sys.exit(f"compare_pytorch_gpu: needs torch with CUDA ({e})")
    configs = []
    for item in a.configs.split(","):
        precision, batch = item.split(":")
        configs.append((precision, int(batch)))
    print(f"{'precision':>9} {'batch':>5} | {'tandem img/s':>12} {'torch img/s':>11} {'ratio':>6} | "
          f"{'tandem MB':>9} {'torch MB':>9} {'ratio':>6}")
    for precision, batch in configs:
        t_runs, p_runs = [], []
        for _ in range(a.rounds):
            t_runs.append(run_tandem(binary, batch, precision, a.steps, a.warmup))
            p_runs.append(run_torch(batch, precision, a.steps, a.warmup))
        ti, tm = median_of(t_runs, 0), median_of(t_runs, 1)
        pi, pm = median_of(p_runs, 0), median_of(p_runs, 1)
        if ti is None:
            print(f"{precision:>9} {batch:>5} | {'not run':>12} {pi:>11.1f} {'-':>6} | "
                  f"{'-':>9} {pm:>9.0f} {'-':>6}")
        else:
            print(f"{precision:>9} {batch:>5} | {ti:>12.1f} {pi:>11.1f} {ti / pi:>6.2f} | "
                  f"{tm:>9.0f} {pm:>9.0f} {tm / pm:>6.2f}")


if __name__ == "__main__":
    main()
