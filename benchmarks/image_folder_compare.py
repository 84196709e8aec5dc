#!/usr/bin/python3
"""Decoded + augmented images/s: tandem's image_folder loader against torchvision's ImageFolder +
DataLoader (PIL), same transforms, side by side in one run.

    benchmarks/image_folder_compare.py BUILD_DIR [--images 600] [--size 224] [--epochs 2]

Writes --images 500x375 JPEGs (quality 90, ImageNet's typical size) into a temporary folder,
then times, on the same files:
  tandem       build/benchmarks/image_folder_decode: TurboJPEG decode, RandomResizedCrop,
               flip, normalisation, batches of 32, on N loader threads;
  torchvision  datasets.ImageFolder + DataLoader(batch 32, num_workers 0 or N) with
               RandomResizedCrop(size), RandomHorizontalFlip, ToTensor, Normalize
               (torch.set_num_threads(1)).
One loader thread against num_workers=0 (the main process) is the per-core comparison, reported
as wall-clock images/s and as images per CPU second of the process (robust to other work on the
machine). Each side runs --repeats times, alternating; the best is reported. The first epoch of
each run warms the page cache and is not timed. Also the evaluation transforms
(Resize(size / 0.875) + CenterCrop).
"""
import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time

import torch
import torchvision.datasets as datasets
import torchvision.transforms as T

HERE = os.path.dirname(os.path.abspath(__file__))


def torchvision_rate(root, size, workers, epochs, train):
    torch.set_num_threads(1)
    norm = T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    if train:
        tf = T.Compose([T.RandomResizedCrop(size), T.RandomHorizontalFlip(), T.ToTensor(), norm])
    else:
        tf = T.Compose([T.Resize(int(size / 0.875)), T.CenterCrop(size), T.ToTensor(), norm])
    ds = datasets.ImageFolder(os.path.join(root, "train"), tf)
    loader = torch.utils.data.DataLoader(ds, batch_size=32, shuffle=True, drop_last=True,
                                         num_workers=workers,
                                         persistent_workers=workers > 0)
    n = 0
    for e in range(epochs + 1):
        if e == 1:
            start, cpu, n = time.perf_counter(), time.process_time(), 0
        for x, y in loader:
            n += x.shape[0]
    # CPU time counts this process only: meaningful with num_workers=0.
    return n / (time.perf_counter() - start), n / (time.process_time() - cpu)


def tandem_rate(build, root, size, workers, epochs, train):
    cmd = [os.path.join(build, "benchmarks", "image_folder_decode"), "--root", root, "--size",
           str(size), "--workers", str(workers), "--epochs", str(epochs)]
    if not train:
        cmd.append("--eval")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return (float(out.split("images_per_sec=")[1].split()[0]),
            float(out.split("images_per_cpu_sec=")[1].split()[0]))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("build")
    p.add_argument("--images", type=int, default=600)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--threads", default="1,2", help="loader threads to measure, e.g. 1,2")
    p.add_argument("--repeats", type=int, default=3,
                   help="alternating runs of each side; the best is reported")
    args = p.parse_args()
    sys.path.insert(0, os.path.join(HERE, "..", "tests", "reference"))
    import image_folder_ref
    with tempfile.TemporaryDirectory() as root:
        image_folder_ref.bench(root, args.images)
        cpu = "?"
        try:
            with open("/proc/cpuinfo") as f:
                cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
        except (OSError, StopIteration):
            pass
        print(f"# {args.images} JPEGs 500x375 q90 -> {args.size}x{args.size}; {cpu}, "
              f"{os.cpu_count()} cores; torch {torch.__version__}; load {os.getloadavg()[0]:.2f}")
        print("| transforms | loader threads | tandem img/s | torchvision img/s | ratio "
              "| tandem img/CPU-s | torchvision img/CPU-s | ratio per core |")
        print("|---|---|---|---|---|---|---|---|")
        for train in (True, False):
            for w in [int(x) for x in args.threads.split(",")]:
                t, tv = [], []
                for _ in range(args.repeats):  # alternate, so load spikes hit both sides
                    t.append(tandem_rate(args.build, root, args.size, w, args.epochs, train))
                    # Per core: one tandem loader thread against torchvision in the main process.
                    tv.append(torchvision_rate(root, args.size, 0 if w == 1 else w, args.epochs,
                                               train))
                tw, tc = max(x[0] for x in t), max(x[1] for x in t)
                vw, vc = max(x[0] for x in tv), max(x[1] for x in tv)
                name = "train (RandomResizedCrop + flip)" if train else "eval (Resize + CenterCrop)"
                tv_w = "main process" if w == 1 else f"{w} workers"
                cpu = (f"{tc:.0f} | {vc:.0f} | {tc / vc:.2f}x" if w == 1
                       else f"{tc:.0f} | - | -")
                print(f"| {name} | {w} (torchvision: {tv_w}) | {tw:.0f} | {vw:.0f} | "
                      f"{tw / vw:.2f}x | {cpu} |", flush=True)


if __name__ == "__main__":
    main()
