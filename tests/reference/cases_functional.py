"""Reference cases for batch norm, softmax, losses and activations
(tests/core/ops/nn_functional_test.cc).

Every case runs the op forward in the inputs' dtype, backpropagates `grad_out` where the op has an
output larger than a scalar, and returns the output and the gradient of every input that asked for
one (plus, for batch norm, the running statistics after the in-place update).
"""
import torch
import torch.nn.functional as F

from torch_reference import case


def _grads(result, leaves):
    for name, leaf in leaves.items():
        if leaf is not None and leaf.requires_grad:
            result["grad_" + name] = leaf.grad
    return result


@case("batch_norm")
def batch_norm(t, a):
    x = t["x"].requires_grad_()
    w = t["weight"].requires_grad_() if "weight" in t else None
    b = t["bias"].requires_grad_() if "bias" in t else None
    rm = t.get("running_mean")
    rv = t.get("running_var")
    out = F.batch_norm(x, rm, rv, w, b, training=a["training"], momentum=a["momentum"], eps=a["eps"])
    out.backward(t["grad_out"])
    result = {"out": out.detach()}
    if rm is not None:
        result["running_mean"] = rm
        result["running_var"] = rv
    return _grads(result, {"x": x, "weight": w, "bias": b})


@case("softmax")
def softmax(t, a):
    """One run for several variants: a["variants"] is a list of [dim, log]; results get suffix _i."""
    result = {}
    for i, (dim, log) in enumerate(a["variants"]):
        x = t["x"].clone().requires_grad_()
        out = (F.log_softmax if log else F.softmax)(x, dim=dim)
        out.backward(t["grad_out"])
        result[f"out_{i}"] = out.detach()
        result[f"grad_x_{i}"] = x.grad
    return result


@case("cross_entropy")
def cross_entropy(t, a):
    """One run per label smoothing in a["label_smoothing"] (a list); results get suffix _i."""
    result = {}
    for i, ls in enumerate(a["label_smoothing"]):
        x = t["logits"].clone().requires_grad_()
        loss = F.cross_entropy(x, t["target"], label_smoothing=ls)
        loss.backward()
        result[f"out_{i}"] = loss.detach()
        result[f"grad_logits_{i}"] = x.grad
    return result


@case("mse_loss")
def mse_loss(t, a):
    x = t["input"].requires_grad_()
    y = t["target"].requires_grad_()
    loss = F.mse_loss(x, y)
    loss.backward()
    return _grads({"out": loss.detach()}, {"input": x, "target": y})


@case("gelu")
def gelu(t, a):
    x = t["x"].requires_grad_()
    out = F.gelu(x)
    out.backward(t["grad_out"])
    return _grads({"out": out.detach()}, {"x": x})
