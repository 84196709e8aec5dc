#!/usr/bin/python3
"""DDP scaling on this machine, and tandem's DDP side by side with PyTorch DDP.

For each MODEL:B, in one invocation and alternating, --rounds times:
  tandem 1x1     `tandem train CONFIG training.threads=1` at batch B       (1 rank x 1 thread)
  tandem 2x1     `tandem launch --nproc-per-node 2 CONFIG strategy.name=ddp training.threads=1`
                 at global batch B (strong scaling: each rank B/2), with the defaults on one host:
                 shm transport, sharded optimizer update
  tandem 2x1 w   the same at global batch 2B (weak scaling: each rank B, as Horovod measures)
  tandem full    2x1 at global batch B with strategy.shard_optimizer=false (every rank runs the
                 whole optimizer update, as PyTorch DDP does)
  tandem gloo    2x1 at global batch B with strategy.backend=gloo (loopback TCP, no shared memory,
                 full update)
  torch 1x1      PyTorch 1.13, one process, 1 thread, batch B
  torch 2x1      PyTorch DDP (gloo backend), 2 processes x 1 thread, global batch B
  torch 2x1 w    the same at global batch 2B
Same model and optimizer (Adam 1e-3) everywhere. tandem reads its data through its loader
(lenet: Fashion-MNIST; simple_cnn: synthetic 3x32x32) on the training thread (data.workers=0);
PyTorch trains on pre-generated random tensors (no loading cost at all). tandem's figure is the
`samples_per_sec` of its final line (training steps only, evaluation excluded); PyTorch's is timed
the same way after 5 warm-up steps. Scaling efficiency = (2x1 samples/s) / (2 x 1x1 samples/s),
strong at the same global batch, weak at the same per-rank batch. The table shows medians.

usage: benchmarks/ddp_scaling.py [--build build] [--models lenet:64,simple_cnn:64]
                                  [--steps 150] [--rounds 3]
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

CONFIGS = {
    "lenet": ("configs/fashion_mnist_cnn.yaml", []),
    "simple_cnn": ("configs/cifar10_simple_cnn.yaml",
                   ["data.name=synthetic", "data.synthetic_shape=[3,32,32]", "data.synthetic_samples=20000"]),
}


def tandem_run(binary, model, batch, steps, ranks, backend="auto", extra_overrides=(), root=ROOT):
    """samples/s of one tandem run; `root` is the source tree whose configs/ it reads."""
    cfg, extra = CONFIGS[model]
    with tempfile.TemporaryDirectory() as work:
        overrides = extra + [f"data.batch_size={batch}", f"training.max_steps={steps}", "training.threads=1",
                             "data.workers=0", "optimizer.name=adam", "optimizer.lr=0.001",
                             "schedule.name=constant", "training.eval_every_epoch=false",
                             "checkpoint.resume=never", f"checkpoint.dir={work}/ck", f"logging.dir={work}/log",
                             "logging.progress=none", "logging.tensorboard=false"]
        if ranks == 1:
            cmd = [binary, "train", os.path.join(root, cfg)] + overrides
        else:
            cmd = [binary, "launch", "--nproc-per-node", str(ranks), os.path.join(root, cfg),
                   "strategy.name=ddp", f"strategy.backend={backend}"] + list(extra_overrides) + overrides
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    m = re.search(r"final: .*samples_per_sec=([0-9.]+)", out)
    assert m, out
    return float(m.group(1))


TORCH_WORKER = r"""
import os, sys, time, torch, torch.distributed as dist
sys.path.insert(0, {here!r})
import torch_models
def main(rank, world, model, batch, steps, port):
    torch.set_num_threads(1)
    if world > 1:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)
    net, shape = torch_models.make(model)
    if model == "simple_cnn":
        shape = (3, 32, 32)
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(net)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    local = batch // world
    xs = [torch.randn(local, *shape) for _ in range(4)]
    ys = [torch.randint(0, 10, (local,)) for _ in range(4)]
    def step(i):
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(net(xs[i % 4]), ys[i % 4]).backward()
        opt.step()
    for i in range(5):
        step(i)
    if world > 1:
        dist.barrier()
    t = time.perf_counter()
    for i in range(steps):
        step(i)
    if world > 1:
        dist.barrier()
    dt = time.perf_counter() - t
    if rank == 0:
        print(f"samples_per_sec={{batch * steps / dt}}", flush=True)
if __name__ == "__main__":
    model, batch, steps, world, port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    if world == 1:
        main(0, 1, model, batch, steps, port)
    else:
        torch.multiprocessing.spawn(main, args=(world, model, batch, steps, port), nprocs=world)
"""


def torch_run(model, batch, steps, ranks, port):
    code = TORCH_WORKER.format(here=HERE)
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(code)
        path = f.name
    try:
        out = subprocess.run(["/usr/bin/python3", path, model, str(batch), str(steps), str(ranks), str(port)],
                             check=True, capture_output=True, text=True,
                             env=dict(os.environ, OMP_NUM_THREADS="1")).stdout
    finally:
        os.unlink(path)
    return float(re.search(r"samples_per_sec=([0-9.]+)", out).group(1))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--models", default="lenet:64,simple_cnn:64")
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    binary = os.path.join(args.build, "launcher", "tandem")
    if not os.path.exists(binary):
        sys.exit(f"{binary} not found: build it with `cmake --build {args.build} --target tandem`")
    rows = []
    port = 29600
    for spec in args.models.split(","):
        model, batch = spec.split(":")
        b = int(batch)
        runs = {k: [] for k in ("t1", "t2", "t2w", "tf", "tg", "p1", "p2", "p2w")}
        for r in range(args.rounds):
            runs["t1"].append(tandem_run(binary, model, b, args.steps, 1))
            runs["t2"].append(tandem_run(binary, model, b, args.steps, 2))
            runs["t2w"].append(tandem_run(binary, model, 2 * b, args.steps, 2))
            runs["tf"].append(tandem_run(binary, model, b, args.steps, 2, "auto", ["strategy.shard_optimizer=false"]))
            runs["tg"].append(tandem_run(binary, model, b, args.steps, 2, "gloo"))
            runs["p1"].append(torch_run(model, b, args.steps, 1, port))
            port += 1
            runs["p2"].append(torch_run(model, b, args.steps, 2, port))
            port += 1
            runs["p2w"].append(torch_run(model, 2 * b, args.steps, 2, port))
            port += 1
            print(f"# {model} round {r + 1}: " + "  ".join(f"{k} {v[-1]:.0f}" for k, v in runs.items()), flush=True)
        med = {k: statistics.median(v) for k, v in runs.items()}
        rows.append((model, b, med))
    print()
    print("| model | B | tandem 1x1 (B) | ddp 2x1, global B | strong scaling | ddp 2x1, global 2B | weak scaling "
          "| ddp 2x1 full optimizer update, global B | strong scaling | ddp 2x1 over gloo, global B | strong scaling "
          "| PyTorch 1x1 (B) | PyTorch DDP 2x1, global B | PyTorch DDP 2x1, global 2B | PyTorch strong / weak scaling "
          "| tandem / PyTorch DDP, global B | global 2B |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for model, b, m in rows:
        print(f"| {model} | {b} | {m['t1']:.0f} | {m['t2']:.0f} | {m['t2'] / (2 * m['t1']):.0%} | "
              f"{m['t2w']:.0f} | {m['t2w'] / (2 * m['t1']):.0%} | "
              f"{m['tf']:.0f} | {m['tf'] / (2 * m['t1']):.0%} | {m['tg']:.0f} | {m['tg'] / (2 * m['t1']):.0%} | "
              f"{m['p1']:.0f} | {m['p2']:.0f} | {m['p2w']:.0f} | "
              f"{m['p2'] / (2 * m['p1']):.0%} / {m['p2w'] / (2 * m['p1']):.0%} | "
              f"{m['t2'] / m['p2']:.2f} | {m['t2w'] / m['p2w']:.2f} |")
    print(f"\nsamples/s, medians of {args.rounds} alternating rounds of {args.steps} steps; {time.strftime('%Y-%m-%d %H:%M')}")


if __name__ == "__main__":
    main()
