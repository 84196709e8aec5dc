#!/usr/bin/python3
"""All-reduce bandwidth and DDP throughput across emulated hosts, flat against hierarchical.

Hosts are network namespaces on this machine (tests/multihost/cluster.sh, run as root), their
links shaped with tc tbf to each --rates value in both directions. For every host count H (with
2 ranks per host, N = 2H ranks) and rate R, in one invocation and --rounds times:

  busbw   all-reduce of 1-64 MiB f32 (allreduce_busbw): the hierarchical all-reduce against Gloo's
          flat ring over all N ranks, alternating call by call in one run (tandem launch on every
          host); tandem's MPI communicator against MPI_Allreduce (mpirun over the hosts).
  ddp     samples/s of `tandem launch` ddp on every host (lenet on Fashion-MNIST, simple_cnn on
          synthetic 3x32x32), 64 samples per rank, with strategy.backend=gloo (flat ring) and
          the default (hierarchical), alternating.

Link limit: whatever the algorithm, each host must send at least 2(H-1)/H x S bytes out of its
link for an all-reduce of S bytes across H hosts (the hierarchical all-reduce sends exactly that;
a host-ordered flat ring over N ranks sends 2(N-1)/N x S, so it can reach at most
(H-1)N / (H(N-1)) of the limit: 0.67 at 2 x 2, 0.86 at 4 x 2). "of link" is the time that many
bytes take at the shaped rate R over the measured median (1.0 = the link's rate; Ethernet, IP
and TCP headers count against it, so payload tops out near 0.95). A call's time is its slowest
rank's. Tables show medians over the rounds of each run's median.

usage: benchmarks/multihost_bench.py [--build build] [--hosts 2,4] [--rates 1gbit,100mbit]
                                     [--rounds 3] [--what busbw,ddp] [--ddp-steps 30]
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CLUSTER = os.path.join(ROOT, "tests", "multihost", "cluster.sh")
RSH = os.path.join(ROOT, "tests", "multihost", "rsh_agent.sh")
NET = "198.18.200"
PER_HOST = 2
MIB = 1 << 20


def cluster(*args, check=True, **kw):
    return subprocess.run([CLUSTER, *args], check=check, text=True, **kw)


def rate_bytes(rate):
    m = re.fullmatch(r"([0-9.]+)(k|m|g)bit", rate)
    return float(m.group(1)) * {"k": 1e3, "m": 1e6, "g": 1e9}[m.group(2)] / 8


def job_tls(directory):
    """The job's TLS certificate and key (the store speaks TLS across hosts), made with openssl as
    the README shows for `tandem launch` across hosts, in a directory every host sees."""
    os.makedirs(directory, exist_ok=True)
    cert, key = os.path.join(directory, "job_tls.crt"), os.path.join(directory, "job_tls.key")
    old = os.umask(0o077)
    try:
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-days", "2", "-subj", "/CN=tandem-job",
                        "-addext", "subjectAltName=DNS:tandem-job", "-keyout", key, "-out", cert],
                       check=True, capture_output=True)
    finally:
        os.umask(old)
    os.environ.update(TANDEM_TLS_CERT=cert, TANDEM_TLS_KEY=key)


def launch_all(hosts, port, argv, timeout, per_host=PER_HOST):
    """tandem launch on every host (argv: tandem, "launch", then the rest); rank 0's stdout."""
    procs = []
    for i in range(hosts):
        procs.append(subprocess.Popen(
            [CLUSTER, "run", f"h{i}", *argv[0:2], "--nnodes", str(hosts), "--node-rank", str(i),
             "--rdzv-endpoint", f"{NET}.1:{port}", "--nproc-per-node", str(per_host), *argv[2:]],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=os.getcwd()))
    outs = [p.communicate(timeout=timeout)[0] for p in procs]
    for i, (p, out) in enumerate(zip(procs, outs)):
        if p.returncode != 0:
            sys.exit(f"host h{i} failed:\n{out[-3000:]}")
    return outs[0]


def parse_busbw(out):
    """bytes -> (raw median us, tandem median us)."""
    rows = {}
    for line in out.splitlines():
        m = re.search(r"\| (\d+) \| \d+ \| ([0-9.]+) \| ([0-9.]+) \|", line)
        if m:
            rows[int(m.group(1))] = (float(m.group(2)), float(m.group(3)))
    return rows


def busbw_round(args, hosts, rate, port):
    bench = os.path.join(args.build, "benchmarks", "allreduce_busbw")
    tandem = os.path.join(args.build, "launcher", "tandem")
    slow = rate_bytes(rate) < 50e6
    sizes = ["--min-bytes", str(MIB), "--max-bytes", str(64 * MIB), "--iters", "3" if slow else "8"]
    hier = launch_all(hosts, port, [tandem, "launch", "--exec", "--", bench, "--backend",
                                    "hierarchical", *sizes], timeout=7200)
    hostlist = ",".join(f"h{i}:{PER_HOST}" for i in range(hosts))
    mpi = subprocess.run(
        [CLUSTER, "run", "h0", "mpirun", "--mca", "plm_rsh_agent", RSH, "--mca",
         "btl_tcp_if_include", f"{NET}.0/24", "--mca", "oob_tcp_if_include", f"{NET}.0/24",
         "--bind-to", "none", "--mca", "mpi_yield_when_idle", "1", "-H", hostlist, "-np", str(hosts * PER_HOST), bench, "--backend",
         "mpi", *sizes], check=True, capture_output=True, text=True, timeout=7200).stdout
    return parse_busbw(hier), parse_busbw(mpi)


MODELS = {
    "lenet": ("configs/fashion_mnist_cnn.yaml", []),
    "simple_cnn": ("configs/cifar10_simple_cnn.yaml",
                   ["data.name=synthetic", "data.synthetic_shape=[3,32,32]",
                    "data.synthetic_samples=20000"]),
}


def ddp_round(args, hosts, model, backend, steps, port):
    cfg, extra = MODELS[model]
    tandem = os.path.join(args.build, "launcher", "tandem")
    work = tempfile.mkdtemp(dir=os.path.join(args.build, "multihost"))
    overrides = extra + [
        f"data.batch_size={64 * hosts * PER_HOST}", f"training.max_steps={steps}",
        "training.threads=1", "data.workers=0", "optimizer.name=adam", "optimizer.lr=0.001",
        "training.eval_every_epoch=false", "checkpoint.resume=never", "checkpoint.every_steps=0",
        f"checkpoint.dir={work}/ck", f"logging.dir={work}/log", "logging.progress=none",
        "logging.tensorboard=false", "strategy.name=ddp", f"strategy.backend={backend}"]
    out = launch_all(hosts, port, [tandem, "launch", os.path.join(ROOT, cfg), *overrides],
                     timeout=3600)
    subprocess.run(["rm", "-rf", work], check=True)
    m = re.search(r"final: .*samples_per_sec=([0-9.]+)", out)
    if not m:
        sys.exit(f"no final line:\n{out[-2000:]}")
    chosen = "hierarchical" if "hierarchical all-reduce" in out else "flat"
    return float(m.group(1)), chosen


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--hosts", default="2,4")
    ap.add_argument("--rates", default="1gbit,100mbit")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--what", default="busbw,ddp")
    ap.add_argument("--ddp-steps", type=int, default=30)
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("multihost_bench.py creates network namespaces: run it as root")
    args.build = os.path.abspath(args.build)
    os.makedirs(os.path.join(args.build, "multihost"), exist_ok=True)
    os.environ.update(TANDEM_CLUSTER="bench", TANDEM_CLUSTER_NET=NET,
                      TANDEM_CLUSTER_SHARE=f"{ROOT}:{args.build}", TANDEM_JOB_TOKEN="bench-token",
                      OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    job_tls(os.path.join(args.build, "multihost", "tls"))
    what = args.what.split(",")
    port = 29900
    try:
        for hosts in [int(h) for h in args.hosts.split(",")]:
            n = hosts * PER_HOST
            cluster("up", str(hosts), stdout=subprocess.DEVNULL)
            for rate in args.rates.split(","):
                cluster("shape", rate)
                r = rate_bytes(rate)
                print(f"\n## {hosts} hosts x {PER_HOST} ranks, links shaped to {rate}, "
                      f"{args.rounds} rounds\n", flush=True)
                if "busbw" in what:
                    runs = []
                    for _ in range(args.rounds):
                        port += 1
                        runs.append(busbw_round(args, hosts, rate, port))
                    print("| MiB | flat Gloo ms | of link | flat MPI ms | of link | MPI_Allreduce ms "
                          "| of link | hierarchical ms | of link | hierarchical / flat Gloo |")
                    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
                    for size in sorted(runs[0][0]):
                        gloo = statistics.median(h[size][0] for h, _ in runs) / 1e6
                        hier = statistics.median(h[size][1] for h, _ in runs) / 1e6
                        raw_mpi = statistics.median(m[size][0] for _, m in runs) / 1e6
                        mpi = statistics.median(m[size][1] for _, m in runs) / 1e6
                        limit = 2 * (hosts - 1) / hosts * size / r
                        print(f"| {size // MIB} | {gloo * 1e3:.1f} | {limit / gloo:.2f} | "
                              f"{mpi * 1e3:.1f} | {limit / mpi:.2f} | {raw_mpi * 1e3:.1f} | "
                              f"{limit / raw_mpi:.2f} | {hier * 1e3:.1f} | "
                              f"{limit / hier:.2f} | {gloo / hier:.2f}x |", flush=True)
                if "ddp" in what:
                    steps = args.ddp_steps if r >= 50e6 else max(10, args.ddp_steps // 3)
                    print(f"\n| model ({64} per rank, {steps} steps) | flat Gloo samples/s | "
                          "hierarchical samples/s | hierarchical / flat |")
                    print("|---|---:|---:|---:|")
                    for model in MODELS:
                        flat, hier = [], []
                        for _ in range(args.rounds):
                            for backend, into in (("gloo", flat), ("auto", hier)):
                                port += 1
                                sps, chosen = ddp_round(args, hosts, model, backend, steps, port)
                                if (backend == "auto") != (chosen == "hierarchical"):
                                    sys.exit(f"backend {backend} ran {chosen}")
                                into.append(sps)
                        f, h = statistics.median(flat), statistics.median(hier)
                        print(f"| {model} | {f:.0f} | {h:.0f} | {h / f:.2f}x |", flush=True)
    finally:
        cluster("down", check=False)


if __name__ == "__main__":
    main()
