#!/usr/bin/env python3
"""Two builds of tandem side by side: is one slower than the other?

Runs, alternating between the builds, --rounds times:
  train_throughput  forward + backward + Adam on random data, one process, --threads threads
                    (benchmarks/train_throughput), for each MODEL:B of --models
  ddp 2x1           `tandem launch --nproc-per-node 2 CONFIG strategy.name=ddp` at global batch B,
                    1 thread per rank, the defaults on one host (shm, sharded update); the
                    samples_per_sec of the final line (training steps only), for each MODEL:B of
                    --ddp-models (lenet: Fashion-MNIST; simple_cnn: synthetic 3x32x32)
and prints the medians and head / base. Each build runs with the configs of its own source tree
(CMAKE_HOME_DIRECTORY in its CMakeCache.txt). Build both with the same CMAKE_BUILD_TYPE
(Release) and the targets `tandem` and `train_throughput`.

usage: benchmarks/compare_builds.py --base BUILD_DIR --head BUILD_DIR [--rounds 5]
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile

DDP_CONFIGS = {
    "lenet": ("configs/fashion_mnist_cnn.yaml", []),
    "simple_cnn": ("configs/cifar10_simple_cnn.yaml",
                   ["data.name=synthetic", "data.synthetic_shape=[3,32,32]", "data.synthetic_samples=20000"]),
}


def source_dir(build):
    with open(os.path.join(build, "CMakeCache.txt")) as f:
        for line in f:
            if line.startswith("CMAKE_HOME_DIRECTORY:"):
                return line.split("=", 1)[1].strip()
    sys.exit(f"{build}/CMakeCache.txt names no CMAKE_HOME_DIRECTORY")


def throughput(build, model, batch, steps, threads):
    binary = os.path.join(build, "benchmarks", "train_throughput")
    out = subprocess.run([binary, "--model", model, "--batch", str(batch), "--threads", str(threads),
                          "--steps", str(steps)], check=True, capture_output=True, text=True).stdout
    return float(re.search(r"samples_per_sec=([0-9.]+)", out).group(1))


def ddp(build, model, batch, steps):
    root = source_dir(build)
    cfg, extra = DDP_CONFIGS[model]
    with tempfile.TemporaryDirectory() as work:
        cmd = [os.path.join(build, "launcher", "tandem"), "launch", "--nproc-per-node", "2",
               os.path.join(root, cfg), "strategy.name=ddp"] + extra + [
            f"data.batch_size={batch}", f"training.max_steps={steps}", "training.threads=1",
            "data.workers=0", "optimizer.name=adam", "optimizer.lr=0.001", "schedule.name=constant",
            "training.eval_every_epoch=false", "checkpoint.resume=never", f"checkpoint.dir={work}/ck",
            f"logging.dir={work}/log", "logging.progress=none", "logging.tensorboard=false"]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=root).stdout
    m = re.search(r"final: .*samples_per_sec=([0-9.]+)", out)
    if not m:
        sys.exit(f"no final line from {' '.join(cmd)}:\n{out}")
    return float(m.group(1))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", required=True, help="build directory of the reference")
    ap.add_argument("--head", required=True, help="build directory under test")
    ap.add_argument("--models", default="mlp:128,simple_cnn:64", help="train_throughput MODEL:B list")
    ap.add_argument("--ddp-models", default="lenet:64,simple_cnn:64", help="ddp 2x1 MODEL:B list")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=50, help="train_throughput timed steps")
    ap.add_argument("--ddp-steps", type=int, default=150)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    builds = {"base": args.base, "head": args.head}
    cases = [("train_throughput", m) for m in args.models.split(",") if m] + \
            [("ddp 2x1", m) for m in args.ddp_models.split(",") if m]
    runs = {(kind, spec, name): [] for kind, spec in cases for name in builds}
    for r in range(args.rounds):
        for kind, spec in cases:
            model, batch = spec.split(":")
            # Alternate which build goes first, so neither always runs on a warmer machine.
            order = ["base", "head"] if r % 2 == 0 else ["head", "base"]
            for name in order:
                if kind == "train_throughput":
                    v = throughput(builds[name], model, int(batch), args.steps, args.threads)
                else:
                    v = ddp(builds[name], model, int(batch), args.ddp_steps)
                runs[(kind, spec, name)].append(v)
            print(f"round {r + 1}: {kind} {spec}: base {runs[(kind, spec, 'base')][-1]:.0f}  "
                  f"head {runs[(kind, spec, 'head')][-1]:.0f} samples/s", flush=True)
    print()
    print("| benchmark | model:batch | base (samples/s) | head (samples/s) | head / base |")
    print("|---|---|---:|---:|---:|")
    for kind, spec in cases:
        b = statistics.median(runs[(kind, spec, "base")])
        h = statistics.median(runs[(kind, spec, "head")])
        print(f"| {kind} | {spec} | {b:,.0f} | {h:,.0f} | {h / b:.3f} |")


if __name__ == "__main__":
    main()
