#!/usr/bin/python3
"""End to end: your own network on your own images (README: "Your own network and images").

  own_network_e2e.py TANDEM_BINARY

A small PyTorch CNN with a skip connection (tests/reference/onnx_models.py tiny_cnn) is exported
to ONNX; an image folder is written from Fashion-MNIST (32x32 color JPEGs and PNGs); `tandem
launch --nproc-per-node 2` trains it with ddp, a held-out validation fraction, early stopping and
keep_best; then `tandem eval --json` (one process, and two under `tandem launch --exec`) on the
best checkpoint must agree with PyTorch evaluating the same weights on the same images,
`tandem predict --json` must pick PyTorch's classes, and model.safetensors must load into the
PyTorch module with load_state_dict(strict=True).

Exit 0 pass, 1 fail, 77 skipped (torch, torchvision or PIL missing).
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REFERENCE = os.path.join(HERE, "..", "reference")
sys.path.insert(0, REFERENCE)

try:
    import torch
    import torchvision
    from torchvision import transforms
    from PIL import Image  # noqa: F401 (torchvision's ImageFolder loader)
    import onnx  # noqa: F401 (torch.onnx.export needs it for some opsets)
except ImportError as e:
    print(f"SKIPPED: {e}")
    sys.exit(77)

import safetensors_io  # noqa: E402
from onnx_models import TinyCNN  # noqa: E402

SIZE = 32
IMAGES_PER_SPLIT = 1500


def fail(msg):
    print(f"FAIL: {msg}")
    sys.exit(1)


def run(args, **kw):
    print("==", " ".join(args), flush=True)
    p = subprocess.run(args, capture_output=True, text=True, **kw)
    sys.stdout.write(p.stdout)
    sys.stdout.write(p.stderr)
    return p


def strip_rank(text):
    return "\n".join(re.sub(r"^\[rank \d+\] ", "", line) for line in text.splitlines())


def torch_eval(model, root):
    """Loss and accuracy of `model` on root/val with tandem's evaluation transforms."""
    tf = transforms.Compose([
        transforms.Resize(int(SIZE / 0.875)), transforms.CenterCrop(SIZE), transforms.ToTensor(),
        transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
    data = torchvision.datasets.ImageFolder(os.path.join(root, "val"), tf)
    loader = torch.utils.data.DataLoader(data, batch_size=256)
    loss, hits, n = 0.0, 0, 0
    with torch.no_grad():
        for x, y in loader:
            z = model(x)
            loss += torch.nn.functional.cross_entropy(z, y, reduction="sum").item()
            hits += (z.argmax(1) == y).sum().item()
            n += len(y)
    return loss / n, hits / n, tf, data.classes


def main():
    tandem = os.path.abspath(sys.argv[1])
    work = tempfile.mkdtemp(prefix="tandem-own-network-")
    try:
        os.chdir(work)
        # 1. The network, exported by PyTorch.
        p = run([sys.executable, os.path.join(REFERENCE, "onnx_models.py"), "export", "tiny_cnn",
                 "net.onnx", "--size", str(SIZE)])
        if p.returncode:
            fail("export")
        # 2. The images: data/train/<class>/*, data/val/<class>/*.
        p = run([sys.executable, os.path.join(REFERENCE, "image_folder_ref.py"), "fashion", "data",
                 str(IMAGES_PER_SPLIT), str(SIZE)])
        if p.returncode:
            fail("image folder")
        with open("experiment.yaml", "w") as f:
            f.write(f"""seed: 1
model: {{onnx: net.onnx}}
data: {{name: image_folder, path: data, image_size: {SIZE}, batch_size: 32, workers: 1,
       validation_fraction: 0.2}}
optimizer: {{name: adam, lr: 0.005}}
training: {{epochs: 40, threads: 1, eval_every_epoch: false,
           early_stopping: {{metric: val_loss, patience: 3, min_delta: 0.005}}}}
strategy: {{name: ddp}}
checkpoint: {{dir: run/checkpoints, keep: 1, keep_best: val_accuracy}}
logging: {{dir: run, progress: plain, tensorboard: false}}
""")
        # 3. Train with ddp on 2 processes.
        p = run([tandem, "launch", "--nproc-per-node", "2", "experiment.yaml"])
        if p.returncode:
            fail(f"tandem launch exited {p.returncode}")
        out = strip_rank(p.stdout)
        epochs = re.findall(r"^epoch (\d+)/40: train_loss \S+ val_loss (\S+) val_accuracy (\S+)$",
                            out, re.M)
        if not epochs:
            fail("no epoch lines with val_loss and val_accuracy")
        if "early stopping: val_loss has not improved" not in out or len(epochs) >= 40:
            fail("training did not stop early")
        if not os.path.isdir("run/checkpoints/best"):
            fail("no run/checkpoints/best")
        best_acc = max(float(a) for _, _, a in epochs)
        print(f"ok: stopped early after {len(epochs)} epochs; best val_accuracy {best_acc}")

        # 4. Load the best weights back into the PyTorch module (strict) and evaluate them.
        model = TinyCNN(3, SIZE, 10)
        state = safetensors_io.load("run/checkpoints/best/model.safetensors")
        model.load_state_dict(state, strict=True)
        model.eval()
        ref_loss, ref_acc, tf, classes = torch_eval(model, "data")
        print(f"torch: val/ loss {ref_loss:.5f} accuracy {ref_acc:.5f}")

        # 5. tandem eval --json on the best checkpoint, in one process and sharded over two.
        p = run([tandem, "eval", "experiment.yaml", "--json"])
        if p.returncode:
            fail(f"tandem eval exited {p.returncode}")
        one = json.loads(p.stdout)
        p = run([tandem, "launch", "--nproc-per-node", "2", "--exec", "--", tandem, "eval",
                 "experiment.yaml", "--json"])
        if p.returncode:
            fail(f"tandem eval under launch exited {p.returncode}")
        lines = [l for l in strip_rank(p.stdout).splitlines() if l.startswith("{")]
        if len(lines) != 1:
            fail(f"expected one JSON line from rank 0, got {len(lines)}")
        two = json.loads(lines[0])
        for r in (one, two):
            if not r["checkpoint"].endswith("run/checkpoints/best"):
                fail(f"evaluated {r['checkpoint']}, not the best checkpoint")
            if r["samples"] != IMAGES_PER_SPLIT or r["classes"] != classes:
                fail(f"samples {r['samples']} classes {r['classes']}")
            if abs(r["accuracy"] - ref_acc) > 1.5 / IMAGES_PER_SPLIT:
                fail(f"accuracy {r['accuracy']} vs torch {ref_acc}")
            if abs(r["loss"] - ref_loss) > 2e-3:
                fail(f"loss {r['loss']} vs torch {ref_loss}")
            if sum(map(sum, r["confusion_matrix"])) != IMAGES_PER_SPLIT:
                fail("confusion matrix does not count every sample")
            diag = sum(r["confusion_matrix"][i][i] for i in range(10))
            if abs(diag / IMAGES_PER_SPLIT - r["accuracy"]) > 1e-9:
                fail("confusion matrix diagonal disagrees with accuracy")
        if abs(one["loss"] - two["loss"]) > 1e-5 or one["confusion_matrix"] != two["confusion_matrix"]:
            fail("one process and two disagree")
        # Measured: about 0.6 after ~20 epochs (a 16-channel CNN on 1200 32x32 images); chance
        # is 0.1.
        if one["accuracy"] < 0.45:
            fail(f"accuracy {one['accuracy']} is not well above chance")
        print(f"ok: tandem eval loss {one['loss']:.5f} accuracy {one['accuracy']:.5f} "
              f"top5 {one['top5_accuracy']:.5f} (1 and 2 processes)")

        # 6. tandem predict --json on new images: PyTorch's argmax.
        os.makedirs("new")
        picked = []
        for c in classes[:4]:
            name = sorted(os.listdir(os.path.join("data/val", c)))[0]
            shutil.copy(os.path.join("data/val", c, name), os.path.join("new", f"{c}_{name}"))
            picked.append(os.path.join("new", f"{c}_{name}"))
        p = run([tandem, "predict", "experiment.yaml", "--top-k", "3", "--json", "new"])
        if p.returncode:
            fail(f"tandem predict exited {p.returncode}")
        preds = [json.loads(l) for l in p.stdout.splitlines()]
        if [r["path"] for r in preds] != sorted(picked):
            fail(f"paths {[r['path'] for r in preds]}")
        with torch.no_grad():
            for r in preds:
                z = model(tf(Image.open(r["path"]).convert("RGB")).unsqueeze(0))
                prob = torch.softmax(z, 1)[0]
                want = classes[int(prob.argmax())]
                top = r["top"]
                if len(top) != 3 or top[0]["class"] != want:
                    fail(f"{r['path']}: tandem says {top[0]['class']}, torch {want}")
                if abs(top[0]["probability"] - float(prob.max())) > 1e-4:
                    fail(f"{r['path']}: probability {top[0]['probability']} vs {float(prob.max())}")
        print(f"ok: predict agrees with torch on {len(preds)} images")

        # 7. Errors: a missing image and a missing checkpoint, one line, exit 2.
        p = run([tandem, "predict", "experiment.yaml", "nowhere.png"])
        if p.returncode != 2 or "nowhere.png" not in p.stderr:
            fail("a missing image must exit 2 naming it")
        p = run([tandem, "eval", "experiment.yaml", "--checkpoint", "run/none"])
        if p.returncode != 2 or "run/none" not in p.stderr:
            fail("a missing checkpoint must exit 2 naming it")
        print("PASS")
    finally:
        os.chdir("/")
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
