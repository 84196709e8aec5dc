"""Reference cases for core/data/image_folder: PIL decodes, torchvision crops.

image_decode: {"files": [...]} -> "img.<k>": u8 (H, W, 3), PIL's Image.open(f).convert("RGB")
  (16-bit grayscale PNGs, which PIL clips to 255 on that conversion, as their high byte: tandem's
  documented choice).
image_crops: {"size": S, "crops": [{"file", "width", "height", "uniforms": [[u0..u3] x 10]}, ...],
  "eval_files": [...]} ->
  "box.<k>"  i64 [4] (i, j, h, w): torchvision's RandomResizedCrop.get_params itself, its torch
             random draws replaced by the given uniforms;
  "rrc.<k>"  u8 (3, S, S): torchvision.transforms.functional.resized_crop of the PIL image with
             that box (bilinear);
  "eval.<k>" u8 (3, S, S): Resize(int(S / 0.875)) + CenterCrop(S) of the PIL image;
  "norm.<k>" f32 (3, S, S): the same followed by ToTensor and ImageNet's Normalize.
"""
import math

import numpy as np
import torch
from PIL import Image
import torchvision.transforms as T
import torchvision.transforms.functional as TF
import torchvision.transforms.transforms as TT

from torch_reference import case


def _rgb(path):
    img = Image.open(path)
    if img.mode in ("I;16", "I;16B", "I"):
        return Image.fromarray((np.asarray(img).astype(np.uint32) >> 8).astype(np.uint8), "L").convert("RGB")
    return img.convert("RGB")


@case("image_decode")
def image_decode(inputs, args):
    return {f"img.{k}": torch.from_numpy(np.array(_rgb(f))) for k, f in enumerate(args["files"])}


class _Draws:
    """Stands in for `torch` inside torchvision.transforms.transforms while get_params runs:
    uniform_ and randint read the given uniforms, everything else is torch's."""

    def __init__(self, uniforms):
        self.u = uniforms
        self.attempt = 0
        self.slot = 0

    def _next(self):
        v = self.u[self.attempt][self.slot]
        self.slot += 1
        return v

    def empty(self, *shape):
        draws = self

        class _T:
            def uniform_(self, a, b):
                u = draws._next()
                return _Scalar(float(a) + (float(b) - float(a)) * u)
        return _T()

    def exp(self, x):
        return _Scalar(math.exp(x.item()))

    def randint(self, low, high, size):
        v = low + int(math.floor(self._next() * (high - low)))
        return _Scalar(min(v, high - 1))

    def log(self, t):
        return torch.log(t.double())

    def tensor(self, v):
        return torch.tensor(v, dtype=torch.float64)

    def __getattr__(self, name):
        return getattr(torch, name)


class _Scalar:
    def __init__(self, v):
        self.v = v

    def item(self):
        return self.v


def _box(width, height, uniforms):
    # Each attempt reads its own row of uniforms (tandem draws one Philox block per attempt).
    draws = _Draws(uniforms)
    img = Image.new("RGB", (width, height))
    saved = TT.torch
    TT.torch = draws
    try:
        # get_params draws area (slot 0), ratio (slot 1), then top/left (slots 2, 3) only when the
        # attempt fits; move to the next attempt's row after the ratio when it does not.
        real_uniform = draws.empty

        def empty(*shape):
            if draws.slot >= 2:  # a new attempt: the previous one did not fit
                draws.attempt += 1
                draws.slot = 0
            return real_uniform(*shape)
        draws.empty = empty
        i, j, h, w = T.RandomResizedCrop.get_params(img, [0.08, 1.0], [3.0 / 4.0, 4.0 / 3.0])
    finally:
        TT.torch = saved
    return i, j, h, w


@case("image_crops")
def image_crops(inputs, args):
    s = args["size"]
    out = {}
    for k, c in enumerate(args["crops"]):
        i, j, h, w = _box(c["width"], c["height"], c["uniforms"])
        out[f"box.{k}"] = torch.tensor([i, j, h, w], dtype=torch.int64)
        img = _rgb(c["file"])
        crop = TF.resized_crop(img, i, j, h, w, [s, s], T.InterpolationMode.BILINEAR)
        out[f"rrc.{k}"] = torch.from_numpy(np.array(crop)).permute(2, 0, 1).contiguous()
    resize = T.Compose([T.Resize(int(s / 0.875)), T.CenterCrop(s)])
    norm = T.Compose([T.ToTensor(), T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    for k, f in enumerate(args["eval_files"]):
        img = resize(_rgb(f))
        out[f"eval.{k}"] = torch.from_numpy(np.array(img)).permute(2, 0, 1).contiguous()
        out[f"norm.{k}"] = norm(img)
    return out
