#!/usr/bin/python3
"""Writes small image folders in torchvision's ImageFolder layout, with PIL, for the tests.

usage:
  image_folder_ref.py mixed DIR     every format tandem reads (PNG RGB/L/P/RGBA/16-bit, JPEG
                                     color/gray, nested folder), a text file, two corrupt files
  image_folder_ref.py fashion DIR N SIZE [--corrupt]
                                     N Fashion-MNIST images per split as SIZE x SIZE color JPEGs
                                     and PNGs in 10 class folders (from dataset-fashion-mnist;
                                     synthetic shapes when it is not installed)
  image_folder_ref.py bench DIR N    N 500x375 JPEGs (quality 90, like ImageNet's) in 10 classes
"""
import gzip
import os
import sys

import numpy as np
from PIL import Image


def smooth_image(rng, w, h):
    """Gradients plus noise: something JPEG has to work on."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([x / max(w - 1, 1) * 255, y / max(h - 1, 1) * 255,
                    (x + y) / max(w + h - 2, 1) * 255], -1)
    img += rng.normal(0, 25, img.shape)
    img += 60 * np.sin(x / 7.0)[..., None]
    return np.clip(img, 0, 255).astype(np.uint8)


def mixed(root):
    rng = np.random.default_rng(1)
    files = {
        "train/cat/a_rgb.png": ("RGB", 37, 23, "png"),
        "train/cat/b_gray.png": ("L", 30, 70, "png"),
        "train/cat/c_palette.png": ("P", 41, 29, "png"),
        "train/cat/d_rgba.png": ("RGBA", 33, 33, "png"),
        "train/cat/nested/e_deep.JPG": ("RGB", 64, 48, "jpeg"),
        "train/dog/a_color.jpg": ("RGB", 500, 375, "jpeg"),
        "train/dog/b_gray.jpeg": ("L", 71, 53, "jpeg"),
        "train/dog/c_16bit.png": ("RGB16", 20, 24, "png"),
        "train/zebra/a.png": ("RGB", 90, 60, "png"),
        "train/zebra/b.jpg": ("RGB", 45, 120, "jpeg"),
        "val/cat/v1.jpg": ("RGB", 80, 60, "jpeg"),
        "val/zebra/v2.png": ("RGB", 60, 80, "png"),
    }
    for rel, (mode, w, h, fmt) in files.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        px = smooth_image(rng, w, h)
        if mode == "RGB16":
            arr = (px.astype(np.uint16) * 257 + rng.integers(0, 256, px.shape)).astype(">u2")
            # 16-bit RGB through raw PNG chunks is awkward in PIL; write a 16-bit gray instead.
            Image.fromarray(arr[..., 0].astype(np.uint16), "I;16").save(path)
            continue
        img = Image.fromarray(px, "RGB")
        if mode == "L":
            img = img.convert("L")
        elif mode == "P":
            img = img.convert("P", palette=Image.ADAPTIVE, colors=37)
        elif mode == "RGBA":
            a = rng.integers(0, 256, (h, w), dtype=np.uint8)
            img = Image.fromarray(np.concatenate([px, a[..., None]], -1), "RGBA")
        img.save(path, format=fmt.upper(), **({"quality": 90} if fmt == "jpeg" else {}))
    with open(os.path.join(root, "train/cat/notes.txt"), "w") as f:
        f.write("not an image\n")
    # Corrupt files: a truncated JPEG and a PNG that is not one.
    with open(os.path.join(root, "train/dog/a_color.jpg"), "rb") as f:
        data = f.read()
    with open(os.path.join(root, "train/dog/broken.jpg"), "wb") as f:
        f.write(data[: len(data) // 3])
    with open(os.path.join(root, "train/zebra/garbage.png"), "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + bytes(range(200)))


def fashion_images(split, n):
    prefix = "train" if split == "train" else "t10k"
    d = "/usr/share/datasets/fashion-mnist"
    try:
        with gzip.open(f"{d}/{prefix}-images-idx3-ubyte.gz") as f:
            images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
        with gzip.open(f"{d}/{prefix}-labels-idx1-ubyte.gz") as f:
            labels = np.frombuffer(f.read(), np.uint8, offset=8)
        return images[:n], labels[:n]
    except OSError:  # not installed: class k is a square at a class-dependent place
        rng = np.random.default_rng(0 if split == "train" else 1)
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = np.zeros((n, 28, 28), np.uint8)
        for i, k in enumerate(labels):
            r, c = 2 + (k // 5) * 12, 2 + (k % 5) * 5
            images[i, r:r + 12, c:c + 6] = 200 + rng.integers(0, 50)
        return images, labels


def fashion(root, n, size, corrupt):
    names = ["tshirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
             "boot"]
    for split, folder in (("train", "train"), ("test", "val")):
        images, labels = fashion_images(split, n)
        for i, (img, k) in enumerate(zip(images, labels)):
            d = os.path.join(root, folder, names[k])
            os.makedirs(d, exist_ok=True)
            # Color: the garment in a class-independent tint.
            rgb = np.stack([img, img * 0.8, 255 - img], -1).astype(np.uint8)
            pil = Image.fromarray(rgb, "RGB").resize((size, size), Image.BILINEAR)
            if i % 2:
                pil.save(os.path.join(d, f"{i:05d}.png"))
            else:
                pil.save(os.path.join(d, f"{i:05d}.jpg"), quality=95)
    if corrupt:
        with open(os.path.join(root, "train", names[0], "00000_corrupt.jpg"), "wb") as f:
            f.write(b"\xff\xd8\xff\xe0 truncated")


def bench(root, n):
    rng = np.random.default_rng(2)
    base = smooth_image(rng, 500, 375)
    for i in range(n):
        d = os.path.join(root, "train", f"class{i % 10}")
        os.makedirs(d, exist_ok=True)
        px = np.roll(base, (i * 37) % 500, axis=1)
        Image.fromarray(px, "RGB").save(os.path.join(d, f"{i:05d}.jpg"), quality=90)


def main():
    cmd = sys.argv[1]
    if cmd == "mixed":
        mixed(sys.argv[2])
    elif cmd == "fashion":
        fashion(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), "--corrupt" in sys.argv)
    elif cmd == "bench":
        bench(sys.argv[2], int(sys.argv[3]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
