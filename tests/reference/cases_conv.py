"""Reference cases for convolution and pooling (tests/core/ops/conv_test.cc, pool_test.cc).

One call runs many configurations (starting Python and torch costs seconds): args["runs"] is a
list of per-run argument objects, and run k's tensors are named "k/x", "k/weight", "k/bias",
"k/grad_out". Each run computes the op forward in float64 on the test's (f32) inputs, so the
reference carries no rounding of its own, backpropagates grad_out and returns "k/out" and
"k/grad_<input>" for every input that asked for a gradient.
"""
import torch
import torch.nn.functional as F

from torch_reference import case


def _leaf(t, key, grad=True):
    if key not in t:
        return None
    return t[key].to(torch.float64).requires_grad_(grad)


def _each_run(t, a, fn):
    result = {}
    for k, run in enumerate(a["runs"]):
        p = f"{k}/"
        leaves, out = fn(p, run)
        out.backward(t[p + "grad_out"].to(torch.float64))
        result[p + "out"] = out.detach()
        for name, leaf in leaves.items():
            if leaf is not None and leaf.requires_grad:
                result[p + "grad_" + name] = leaf.grad
    return result


@case("conv2d")
def conv2d(t, a):
    def run(p, r):
        x = _leaf(t, p + "x", r.get("input_grad", True))
        w = _leaf(t, p + "weight")
        b = _leaf(t, p + "bias")
        out = F.conv2d(x, w, b, stride=(r["stride_h"], r["stride_w"]), padding=(r["pad_h"], r["pad_w"]),
                       dilation=(r["dilation_h"], r["dilation_w"]), groups=r["groups"])
        return {"x": x, "weight": w, "bias": b}, out
    return _each_run(t, a, run)


def _pool_args(r):
    return dict(kernel_size=(r["kernel_h"], r["kernel_w"]), stride=(r["stride_h"], r["stride_w"]),
                padding=(r["pad_h"], r["pad_w"]), ceil_mode=r["ceil_mode"])


@case("max_pool2d")
def max_pool2d(t, a):
    def run(p, r):
        x = _leaf(t, p + "x")
        return {"x": x}, F.max_pool2d(x, **_pool_args(r))
    return _each_run(t, a, run)


@case("avg_pool2d")
def avg_pool2d(t, a):
    def run(p, r):
        x = _leaf(t, p + "x")
        return {"x": x}, F.avg_pool2d(x, count_include_pad=r["count_include_pad"], **_pool_args(r))
    return _each_run(t, a, run)


@case("adaptive_avg_pool2d")
def adaptive_avg_pool2d(t, a):
    def run(p, r):
        x = _leaf(t, p + "x")
        return {"x": x}, F.adaptive_avg_pool2d(x, (r["out_h"], r["out_w"]))
    return _each_run(t, a, run)
