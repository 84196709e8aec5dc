#!/usr/bin/python3
"""`tandem scaling` against measured steps on emulated hosts, side by side.

For each model (lenet on Fashion-MNIST, simple_cnn on synthetic 3x32x32, 64 samples per rank),
link rate R and layout H hosts x L ranks (tests/multihost/cluster.sh, as root; links shaped with
tc tbf):

  profile    N = H x L ranks of `tandem launch` on this machine, one host, shared memory, with
             logging.trace: the compute of one rank while N processes share this machine's cores
             -- as they do on the emulated hosts, which all run on it
  predicted  `tandem scaling CONFIG --trace <profile> --nodes H --procs-per-node L
             --inter-gbps R --intra-gbps 40 --algorithm ring (L = 1) | hierarchical (L = 2)`
             (the shared-memory link of one machine: ~5 GB/s measured, 40 Gbit/s)
  measured   the same training on the H emulated hosts with logging.trace: the median "step" of
             rank 0's trace over the same window

and prints predicted against measured step time. Usage:

  benchmarks/scaling_check.py [--build build] [--models lenet,simple_cnn] [--rates 100mbit,1gbit]
                              [--layouts 2x1,2x2,4x1,4x2] [--window 10,25]
"""
import argparse
import glob
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import multihost_bench as mh  # noqa: E402  (its cluster and launch helpers)

PER_RANK = 64


def overrides(model, work, window, ranks):
    cfg, extra = mh.MODELS[model]
    return os.path.join(mh.ROOT, cfg), extra + [
        f"data.batch_size={PER_RANK * ranks}", f"training.max_steps={window[1] + 2}",
        "training.threads=1", "data.workers=0", "optimizer.name=adam",
        "training.eval_every_epoch=false", "checkpoint.resume=never", "checkpoint.every_steps=0",
        f"checkpoint.dir={work}/ck", f"logging.dir={work}/log", "logging.progress=none",
        "logging.tensorboard=false", "strategy.name=ddp", "logging.trace=true",
        # The profile runs over shm, where shard_optimizer's auto shards the update; across hosts
        # it does not. Off in both, so the profile's optimizer is the one the hosts run.
        "strategy.shard_optimizer=false",
        f"logging.trace_steps=[{window[0]},{window[1]}]"]


def median_step_ms(trace_dir):
    d = json.load(open(os.path.join(trace_dir, "rank-0.json")))
    steps = [e["dur"] / 1000 for e in d["traceEvents"] if e.get("name") == "step" and e["ph"] == "X"]
    return statistics.median(steps)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--build", default=os.path.join(mh.ROOT, "build"))
    ap.add_argument("--models", default="lenet,simple_cnn")
    ap.add_argument("--rates", default="100mbit,1gbit")
    ap.add_argument("--layouts", default="2x1,2x2,4x1,4x2")
    ap.add_argument("--window", default="10,25")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("scaling_check.py creates network namespaces: run it as root")
    args.build = os.path.abspath(args.build)
    tandem = os.path.join(args.build, "launcher", "tandem")
    window = [int(x) for x in args.window.split(",")]
    scratch = os.path.join(args.build, "multihost")
    os.makedirs(scratch, exist_ok=True)
    os.environ.update(TANDEM_CLUSTER="bench", TANDEM_CLUSTER_NET=mh.NET,
                      TANDEM_CLUSTER_SHARE=f"{mh.ROOT}:{args.build}", TANDEM_JOB_TOKEN="bench-token")
    mh.job_tls(os.path.join(scratch, "tls"))
    layouts = [tuple(int(v) for v in l.split("x")) for l in args.layouts.split(",")]
    rows = []
    port = 29700
    up = 0
    try:
        for hosts, per in layouts:
            if hosts != up:
                mh.cluster("up", str(hosts), stdout=subprocess.DEVNULL)
                up = hosts
            n = hosts * per
            for model in args.models.split(","):
                with tempfile.TemporaryDirectory(dir=scratch) as work:
                    cfg, ov = overrides(model, f"{work}/profile", window, n)
                    subprocess.run([tandem, "launch", "--nproc-per-node", str(n), cfg, *ov],
                                   check=True, capture_output=True, text=True, cwd=work)
                    profile = f"{work}/profile/log/trace"
                    for rate in args.rates.split(","):
                        mh.cluster("shape", rate)
                        gbps = mh.rate_bytes(rate) * 8 / 1e9
                        pred = subprocess.run(
                            [tandem, "scaling", cfg, *ov, "--trace", profile, "--nodes", str(hosts),
                             "--procs-per-node", str(per), "--inter-gbps", str(gbps),
                             "--intra-gbps", "40", "--batch-per-gpu", str(PER_RANK),
                             "--algorithm", "ring" if per == 1 else "hierarchical"],
                            check=True, capture_output=True, text=True).stdout
                        predicted = float(re.search(r"^nodes=\d+ gpus=\d+ step_ms=([0-9.]+)", pred,
                                                    re.M).group(1))
                        port += 1
                        cfg2, ov2 = overrides(model, f"{work}/run-{rate}", window, n)
                        mh.launch_all(hosts, port, [tandem, "launch", cfg2, *ov2], timeout=3600,
                                      per_host=per)
                        measured = median_step_ms(f"{work}/run-{rate}/log/trace")
                        rows.append((model, rate, hosts, per, predicted, measured))
                        print(f"| {model} | {rate} | {hosts} x {per} | {predicted:.1f} | "
                              f"{measured:.1f} | {predicted / measured - 1:+.1%} |", flush=True)
    finally:
        mh.cluster("down", check=False)
    print("\n| model | link | hosts x ranks | predicted step ms | measured step ms | error |")
    print("|---|---|---|---:|---:|---:|")
    for model, rate, hosts, per, p, m in rows:
        print(f"| {model} | {rate} | {hosts} x {per} | {p:.1f} | {m:.1f} | {p / m - 1:+.1%} |")


if __name__ == "__main__":
    main()
