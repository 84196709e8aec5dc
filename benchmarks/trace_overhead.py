#!/usr/bin/python3
"""What `logging.trace` costs a training step: off, armed (on, its window outside the run) and on.

For each model, `tandem launch --nproc-per-node RANKS ... strategy.name=ddp` trains STEPS steps
three ways, alternating, --rounds times in one invocation:

  off     logging.trace=false
  armed   logging.trace=true with trace_steps beyond the run: the hooks are installed, nothing is
          recorded (what every step outside the window pays)
  on      logging.trace=true with every timed step inside the window (the trace is written after
          the last step, outside the timing)

A run's step time is rank 0's wall time from step FIRST to the last step over the steps between
(`time` of metrics.jsonl, logged every 10 steps), so start-up, data loading before FIRST and
writing the trace are not counted. The table shows medians over the rounds and each variant's
cost relative to off (+ = slower).

usage: benchmarks/trace_overhead.py [--build build] [--models lenet,simple_cnn] [--ranks 2]
                                    [--steps 110] [--first 20] [--rounds 5]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MODELS = {
    "lenet": ("configs/fashion_mnist_cnn.yaml", []),
    "simple_cnn": ("configs/cifar10_simple_cnn.yaml",
                   ["data.name=synthetic", "data.synthetic_shape=[3,32,32]",
                    "data.synthetic_samples=20000"]),
}
PER_RANK = 64


def step_ms(metrics_path, first):
    times = {}
    with open(metrics_path) as f:
        for line in f:
            rec = json.loads(line)
            if "train/loss" in rec:
                times[rec["step"]] = rec["time"]
    last = max(times)
    return (times[last] - times[first]) / (last - first) * 1000


def run(tandem, model, ranks, steps, first, trace_steps, work):
    cfg, extra = MODELS[model]
    args = [tandem, "launch", "--nproc-per-node", str(ranks), os.path.join(ROOT, cfg), *extra,
            "strategy.name=ddp", f"data.batch_size={PER_RANK * ranks}",
            f"training.max_steps={steps}", "training.threads=1", "data.workers=0",
            "training.eval_every_epoch=false", "checkpoint.resume=never",
            "checkpoint.every_steps=0", f"checkpoint.dir={work}/ck", f"logging.dir={work}/log",
            "logging.progress=none", "logging.tensorboard=false", "logging.every_steps=10"]
    if trace_steps is None:
        args.append("logging.trace=false")
    else:
        args += ["logging.trace=true", f"logging.trace_steps=[{trace_steps[0]},{trace_steps[1]}]"]
    subprocess.run(args, check=True, capture_output=True, text=True, cwd=work)
    return step_ms(os.path.join(work, "log", "metrics.jsonl"), first)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--models", default="lenet,simple_cnn")
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--steps", type=int, default=110)
    ap.add_argument("--first", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    if args.first % 10 or args.steps % 10 or args.first >= args.steps:
        sys.exit("--first and --steps are multiples of 10 (the logging interval), first < steps")
    tandem = os.path.join(os.path.abspath(args.build), "launcher", "tandem")
    variants = {
        "off": None,
        "armed": (args.steps + 1000, args.steps + 1001),
        "on": (args.first - 5, args.steps + 5),
    }
    print("| model | ranks | off step ms | armed step ms | on step ms | armed vs off | on vs off |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for model in args.models.split(","):
        times = {v: [] for v in variants}
        for r in range(args.rounds):
            for name, window in variants.items():
                with tempfile.TemporaryDirectory() as work:
                    times[name].append(run(tandem, model, args.ranks, args.steps, args.first,
                                           window, work))
            print(f"# {model} round {r + 1}: " +
                  "  ".join(f"{n} {times[n][-1]:.2f}" for n in variants), file=sys.stderr,
                  flush=True)
        med = {n: statistics.median(t) for n, t in times.items()}
        print(f"| {model} | {args.ranks} | {med['off']:.2f} | {med['armed']:.2f} | "
              f"{med['on']:.2f} | {med['armed'] / med['off'] - 1:+.1%} | "
              f"{med['on'] / med['off'] - 1:+.1%} |", flush=True)


if __name__ == "__main__":
    main()
