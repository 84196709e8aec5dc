#!/usr/bin/python3
"""What `logging.trace` costs a training step: off, armed (on, its window outside the run) and on.

For each model, `tandem train` (--ranks 1) or `tandem launch --nproc-per-node RANKS ...
strategy.name=ddp` trains three ways, alternating, --rounds times in one invocation:

  off     logging.trace=false
  armed   logging.trace=true with trace_steps beyond the run: the hooks are installed, nothing is
          recorded (what every step outside the window pays)
  on      logging.trace=true with every step inside the window (the trace is written after the
          last step)

The cost of a step is CPU time, not wall time, so that other work on a shared machine does not
drown a difference of a few percent: each variant runs twice, FIRST and STEPS steps, and a step
costs (CPU(STEPS) - CPU(FIRST)) / (STEPS - FIRST) -- the user + system time of the launcher and
all its workers (os.wait4), so start-up cancels out and what recording and writing the extra
steps' events costs is counted. Such a difference is still as noisy as the machine (a few
percent), so the script also states a bound that is not: the events a traced step records
(counted in an "on" run's rank-0.json) times what one event costs its thread
(benchmarks/trace_record, CPU time), over the step's CPU time. With several ranks on a loaded machine, CPU time also counts
the spinning of ranks that wait for each other: --ranks 1 is the clean measurement. The table shows medians over the rounds (CPU ms per step, all
ranks together) and each variant's cost relative to off (+ = more).

usage: benchmarks/trace_overhead.py [--build build] [--models lenet,simple_cnn] [--ranks 1]
                                    [--steps 130] [--first 30] [--rounds 5]
"""
import argparse
import json
import os
import re
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


def events_per_step(tandem, model, ranks, steps):
    with tempfile.TemporaryDirectory() as work:
        cpu_s(tandem, model, ranks, steps, (0, steps + 5), work)
        with open(os.path.join(work, "log", "trace", "rank-0.json")) as f:
            trace = json.load(f)
    events = [e for e in trace["traceEvents"] if e.get("ph") == "X"]
    return len(events) / trace["otherData"]["num_steps"]


def record_ns(build):
    out = subprocess.run([os.path.join(build, "benchmarks", "trace_record")], check=True,
                         capture_output=True, text=True).stdout
    ns = dict(re.findall(r"\| (open|closed) \(.*?\) \| ([0-9.]+) \|", out))
    return float(ns["closed"]), float(ns["open"])


def cpu_s(tandem, model, ranks, steps, trace_steps, work):
    cfg, extra = MODELS[model]
    start = [tandem, "train"] if ranks == 1 else [
        tandem, "launch", "--nproc-per-node", str(ranks)]
    args = [*start, os.path.join(ROOT, cfg), *extra,
            "strategy.name=" + ("single" if ranks == 1 else "ddp"),
            f"data.batch_size={PER_RANK * ranks}",
            f"training.max_steps={steps}", "training.threads=1", "data.workers=0",
            "training.eval_every_epoch=false", "checkpoint.resume=never",
            "checkpoint.every_steps=0", f"checkpoint.dir={work}/ck", f"logging.dir={work}/log",
            "logging.progress=none", "logging.tensorboard=false", "logging.every_steps=10"]
    if trace_steps is None:
        args.append("logging.trace=false")
    else:
        args += ["logging.trace=true", f"logging.trace_steps=[{trace_steps[0]},{trace_steps[1]}]"]
    proc = subprocess.Popen(args, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(args)} failed ({proc.returncode}): {proc.stderr.read().decode()}")
    return usage.ru_utime + usage.ru_stime


def step_cpu_ms(tandem, model, ranks, steps, first, trace_steps):
    costs = []
    for n in (first, steps):
        with tempfile.TemporaryDirectory() as work:
            costs.append(cpu_s(tandem, model, ranks, n, trace_steps, work))
    return (costs[1] - costs[0]) / (steps - first) * 1000


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--models", default="lenet,simple_cnn")
    ap.add_argument("--ranks", type=int, default=1)
    ap.add_argument("--steps", type=int, default=130)
    ap.add_argument("--first", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    if not 0 < args.first < args.steps:
        sys.exit("--first must be between 0 and --steps")
    build = os.path.abspath(args.build)
    tandem = os.path.join(build, "launcher", "tandem")
    closed_ns, open_ns = record_ns(build)
    print(f"one event: {closed_ns:.0f} ns outside the window, {open_ns:.0f} ns inside "
          "(trace_record, thread CPU time)\n")
    variants = {
        "off": None,
        "armed": (args.steps + 1000, args.steps + 1001),
        "on": (0, args.steps + 5),
    }
    print("| model | ranks | off CPU ms/step | armed CPU ms/step | on CPU ms/step | armed vs off | "
          "on vs off | events/step | bound: armed | bound: on |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for model in args.models.split(","):
        times = {v: [] for v in variants}
        for r in range(args.rounds):
            for name, window in variants.items():
                times[name].append(step_cpu_ms(tandem, model, args.ranks, args.steps,
                                               args.first, window))
            print(f"# {model} round {r + 1}: " +
                  "  ".join(f"{n} {times[n][-1]:.2f}" for n in variants), file=sys.stderr,
                  flush=True)
        med = {n: statistics.median(t) for n, t in times.items()}
        events = events_per_step(tandem, model, args.ranks, args.steps)
        step_ns = med["off"] / args.ranks * 1e6  # one rank's CPU time per step
        print(f"| {model} | {args.ranks} | {med['off']:.2f} | {med['armed']:.2f} | "
              f"{med['on']:.2f} | {med['armed'] / med['off'] - 1:+.1%} | "
              f"{med['on'] / med['off'] - 1:+.1%} | {events:.0f} | "
              f"{events * closed_ns / step_ns:.4%} | {events * open_ns / step_ns:.3%} |",
              flush=True)


if __name__ == "__main__":
    main()
