#!/usr/bin/python3
"""parameter_server throughput against ddp, on this machine, in one invocation.

For one model and global batch, alternating, --rounds times:
  ddp 2w          `tandem launch --nproc-per-node 2 CONFIG strategy.name=ddp`
  ps sync 2w/1s   `tandem launch --nproc-per-node 2 --num-ps 1 ... strategy.mode=sync`
  ps sync 2w/2s   ... --num-ps 2
  ps async 2w/1s  ... --num-ps 1 strategy.mode=async
  ps async 2w/2s  ... --num-ps 2 strategy.mode=async
Same model, optimizer (Adam 1e-3, constant), global batch, 1 thread per worker, data.workers=0
everywhere. samples/s is the chief's `samples_per_sec` (training steps only, evaluation excluded;
in async mode that is the chief's own rate times the world size, i.e. global batch per chief
step); push and pull are the chief's mean wall time per step for the push of its gradients and
the pull of the new parameters (slowest shard; a sync pull includes waiting for the other
worker's push). The table shows medians over rounds.

With --reference-build DIR (another build of tandem, e.g. of the commit before a change), every
variant also runs with DIR's binary, right after this build's in the same round, and a second
table puts the two side by side.

usage: benchmarks/ps_throughput.py [--build build] [--model mlp] [--batch 128] [--steps 200]
                                   [--rounds 3] [--reference-build DIR]
"""
import argparse
import os
import re
import statistics
import subprocess
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

CONFIGS = {
    "mlp": ("configs/fashion_mnist_mlp.yaml", []),
    "lenet": ("configs/fashion_mnist_cnn.yaml", []),
}

VARIANTS = [
    ("ddp 2w", ["strategy.name=ddp"], 0),
    ("ps sync 2w/1s", ["strategy.name=parameter_server", "strategy.mode=sync"], 1),
    ("ps sync 2w/2s", ["strategy.name=parameter_server", "strategy.mode=sync"], 2),
    ("ps async 2w/1s", ["strategy.name=parameter_server", "strategy.mode=async"], 1),
    ("ps async 2w/2s", ["strategy.name=parameter_server", "strategy.mode=async"], 2),
]


def run(binary, model, batch, steps, extra, num_ps):
    cfg, model_extra = CONFIGS[model]
    with tempfile.TemporaryDirectory() as work:
        overrides = model_extra + extra + [
            f"data.batch_size={batch}", f"training.max_steps={steps}", "training.threads=1",
            "data.workers=0", "optimizer.name=adam", "optimizer.lr=0.001", "schedule.name=constant",
            "training.eval_every_epoch=false", "checkpoint.resume=never", "checkpoint.every_steps=0",
            f"checkpoint.dir={work}/ck", f"logging.dir={work}/log", "logging.progress=none",
            "logging.tensorboard=false"]
        cmd = [binary, "launch", "--nproc-per-node", "2"]
        if num_ps:
            cmd += ["--num-ps", str(num_ps)]
        cmd += [os.path.join(ROOT, cfg)] + overrides
        p = subprocess.run(cmd, check=True, capture_output=True, text=True)
    out = p.stdout
    m = re.search(r"final: .*samples_per_sec=([0-9.]+)", out)
    assert m, out + p.stderr
    sps = float(m.group(1))
    lat = re.search(r"parameter_server: push ([0-9.]+) ms/step, pull ([0-9.]+) ms/step", out)
    return sps, (float(lat.group(1)) if lat else None), (float(lat.group(2)) if lat else None)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--model", default="mlp", choices=sorted(CONFIGS))
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reference-build", default=None)
    args = ap.parse_args()
    binary = os.path.join(args.build, "launcher", "tandem")
    reference = os.path.join(args.reference_build, "launcher", "tandem") if args.reference_build else None
    results = {name: [] for name, _, _ in VARIANTS}
    ref_results = {name: [] for name, _, _ in VARIANTS}
    for r in range(args.rounds):
        for name, extra, num_ps in VARIANTS:
            results[name].append(run(binary, args.model, args.batch, args.steps, extra, num_ps))
            print(f"round {r + 1}: {name}: {results[name][-1]}", flush=True)
            if reference:
                ref_results[name].append(run(reference, args.model, args.batch, args.steps, extra, num_ps))
                print(f"round {r + 1}: {name} (reference): {ref_results[name][-1]}", flush=True)
    load = os.getloadavg()[0]
    ddp = statistics.median(x[0] for x in results["ddp 2w"])
    print(f"\nmodel {args.model}, global batch {args.batch}, {args.steps} steps, 2 workers x 1 thread, "
          f"medians of {args.rounds} rounds (load average now {load:.1f})\n")
    print("| variant | samples/s | vs ddp | push ms/step | pull ms/step |")
    print("|---|---:|---:|---:|---:|")
    for name, _, _ in VARIANTS:
        runs = results[name]
        sps = statistics.median(x[0] for x in runs)
        push = [x[1] for x in runs if x[1] is not None]
        pull = [x[2] for x in runs if x[2] is not None]
        fmt = lambda v: f"{statistics.median(v):.2f}" if v else "-"
        print(f"| {name} | {sps:.0f} | {sps / ddp:.2f} | {fmt(push)} | {fmt(pull)} |")
    if reference:
        print(f"\nthis build ({args.build}) against the reference ({args.reference_build}), same rounds:\n")
        print("| variant | samples/s | reference | ratio | push ms/step | reference | pull ms/step | reference |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for name, _, _ in VARIANTS:
            med = lambda runs, i: statistics.median(v) if (v := [x[i] for x in runs if x[i] is not None]) else None
            fmt = lambda v: f"{v:.2f}" if v is not None else "-"
            sps, ref = med(results[name], 0), med(ref_results[name], 0)
            print(f"| {name} | {sps:.0f} | {ref:.0f} | {sps / ref:.2f} | {fmt(med(results[name], 1))} | "
                  f"{fmt(med(ref_results[name], 1))} | {fmt(med(results[name], 2))} | {fmt(med(ref_results[name], 2))} |")


if __name__ == "__main__":
    main()
