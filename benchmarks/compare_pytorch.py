#!/usr/bin/python3
"""Training throughput of tandem against PyTorch, side by side in one invocation.

For each model: the same model, batch, optimizer (Adam, lr 1e-3) and random data (a few rotating
batches) in both. Runs alternate tandem / PyTorch for --rounds rounds; each run is a separate
process timing --steps steps after a warm-up; the table shows medians. PyTorch gets the better of
1 and 2 intra-op threads (on a 2-core machine it is often slower with 2); tandem runs with
--threads.

usage: benchmarks/compare_pytorch.py [--build build] [--models mlp:128,simple_cnn:64]
                                      [--steps 50] [--rounds 5] [--threads 2]
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))

# PyTorch gets the best of 1 and 2 threads, each with the caller's OpenBLAS kernels and with
# OpenBLAS's AVX-512 kernels forced (OPENBLAS_CORETYPE=SkylakeX; PyTorch's Debian build links
# OpenBLAS for its GEMMs and oneDNN for its convolutions). tandem inherits the caller's setting.
TORCH_VARIANTS = [(1, None), (2, None), (1, "SkylakeX"), (2, "SkylakeX")]


def label(variant):
    threads, coretype = variant
    return f"{threads}t" + (f" {coretype}" if coretype else "")


def run_tandem(binary, model, batch, threads, steps):
    out = subprocess.run([binary, "--model", model, "--batch", str(batch), "--threads", str(threads),
                          "--steps", str(steps)], check=True, capture_output=True, text=True).stdout
    last = out.strip().splitlines()[-1]
    assert last.startswith("samples_per_sec="), out
    return float(last.split("=")[1])


def torch_env(threads, coretype):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    if coretype:
        env["OPENBLAS_CORETYPE"] = coretype
    return env


def run_torch(model, batch, threads, steps, coretype=None):
    code = f"""
import sys, time, torch
sys.path.insert(0, {HERE!r})
import torch_models
torch.set_num_threads({threads})
torch.manual_seed(0)
net, shape = torch_models.make({model!r})
opt = torch.optim.Adam(net.parameters(), lr=1e-3)
xs = [torch.randn({batch}, *shape) for _ in range(4)]
ys = [torch.randint(0, 10, ({batch},)) for _ in range(4)]
def step(i):
    opt.zero_grad(set_to_none=True)
    loss = torch.nn.functional.cross_entropy(net(xs[i % 4]), ys[i % 4])
    loss.backward()
    opt.step()
for i in range(5):
    step(i)
t = time.perf_counter()
for i in range({steps}):
    step(i)
dt = time.perf_counter() - t
print(f"samples_per_sec={{{batch} * {steps} / dt}}")
"""
    out = subprocess.run(["/usr/bin/python3", "-c", code], check=True, capture_output=True,
                         text=True, env=torch_env(threads, coretype)).stdout
    return float(out.strip().splitlines()[-1].split("=")[1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(HERE, "..", "build"))
    ap.add_argument("--models", default="mlp:128,simple_cnn:64")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    binary = os.path.join(args.build, "benchmarks", "train_throughput")
    if not os.path.exists(binary):
        sys.exit(f"{binary} not found: build it with `cmake --build {args.build} --target train_throughput`")
    rows = []
    for spec in args.models.split(","):
        model, batch = spec.split(":")
        batch = int(batch)
        tandem = []
        torch_runs = {v: [] for v in TORCH_VARIANTS}
        for r in range(args.rounds):
            tandem.append(run_tandem(binary, model, batch, args.threads, args.steps))
            for threads, coretype in TORCH_VARIANTS:
                torch_runs[(threads, coretype)].append(run_torch(model, batch, threads, args.steps, coretype))
            print(f"# {model} round {r + 1}: tandem {tandem[-1]:.0f}  " + "  ".join(
                f"torch({label(v)}) {torch_runs[v][-1]:.0f}" for v in TORCH_VARIANTS) + " samples/s",
                flush=True)
        t = statistics.median(tandem)
        medians = {v: statistics.median(x) for v, x in torch_runs.items()}
        best = max(medians.values())
        rows.append((model, batch, t, medians, t / best))
    print()
    print(f"| model | batch | tandem {args.threads}t (samples/s) | " +
          " | ".join(f"PyTorch {label(v)}" for v in TORCH_VARIANTS) + " | ratio vs best PyTorch |")
    print("|---|---:|---:|" + "---:|" * len(TORCH_VARIANTS) + "---:|")
    for model, batch, t, medians, ratio in rows:
        print(f"| {model} | {batch} | {t:.0f} | " + " | ".join(f"{medians[v]:.0f}" for v in TORCH_VARIANTS)
              + f" | {ratio:.2f} |")
    print(f"\nmedians of {args.rounds} alternating rounds, {args.steps} timed steps each; "
          f"{time.strftime('%Y-%m-%d')}")


if __name__ == "__main__":
    main()
