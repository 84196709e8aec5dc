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
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare_pytorch import run_tandem as throughput  # noqa: E402  (binary, model, batch, threads, steps)
from ddp_scaling import tandem_run  # noqa: E402


def source_dir(build):
    with open(os.path.join(build, "CMakeCache.txt")) as f:
        for line in f:
            if line.startswith("CMAKE_HOME_DIRECTORY:"):
                return line.split("=", 1)[1].strip()
    sys.exit(f"{build}/CMakeCache.txt names no CMAKE_HOME_DIRECTORY")


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
                build = builds[name]
                if kind == "train_throughput":
                    v = throughput(os.path.join(build, "benchmarks", "train_throughput"), model,
                                   int(batch), args.threads, args.steps)
                else:
                    v = tandem_run(os.path.join(build, "launcher", "tandem"), model, int(batch),
                                   args.ddp_steps, 2, root=source_dir(build))
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
