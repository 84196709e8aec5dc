"""Reference cases for core/nn/onnx_model: the nn.Module an ONNX file was exported from, run by
PyTorch on tandem's state.

onnx_model_step: loads tandem's state_dict ("state.*") into the module with
load_state_dict(strict=True) -- which checks that tandem's parameter and buffer names are torch's
-- then runs x through it in train or eval mode, cross-entropy against `target`, backward and one
plain SGD step; returns logits, loss, the buffers after the forward ("after.<buffer>"), gradients
("grad.<param>") and parameters after the step ("after.<param>").

onnx_nhwc_dense: the hand-built tf2onnx-style graph of onnx_models.py, forward only.
"""
import torch
import torch.nn.functional as F

from torch_reference import case
import onnx_models


def _state(inputs, prefix="state."):
    return {k[len(prefix):]: v for k, v in inputs.items() if k.startswith(prefix)}


@case("onnx_model_step")
def onnx_model_step(inputs, args):
    dtype = torch.float64 if args["dtype"] == "f64" else torch.float32
    m = onnx_models.build(args["model"], args.get("size", 16), args.get("classes", 10),
                          args.get("in_channels", 3))
    m.load_state_dict(_state(inputs), strict=True)
    m = m.to(dtype)
    m.train(args["train"])
    x = inputs["x"].to(dtype)
    logits = m(x)
    loss = F.cross_entropy(logits, inputs["target"])
    out = {"logits": logits.detach(), "loss": loss.detach().reshape(())}
    for n, b in m.named_buffers():
        out["after." + n] = b.detach().clone()
    if args.get("step", True):
        loss.backward()
        with torch.no_grad():
            for n, p in m.named_parameters():
                out["grad." + n] = p.grad.clone()
                p -= args["lr"] * p.grad
                out["after." + n] = p.detach().clone()
    return out


@case("onnx_fresh_logits")
def onnx_fresh_logits(inputs, args):
    """The module as onnx_models.py export builds it (seed, no forward run yet), in eval mode."""
    torch.manual_seed(args["seed"])
    m = onnx_models.build(args["model"], args.get("size", 16), args.get("classes", 10))
    m.eval()
    with torch.no_grad():
        return {"logits": m(inputs["x"])}


@case("onnx_nhwc_dense")
def onnx_nhwc_dense(inputs, args):
    return {"logits": onnx_models.nhwc_dense_reference(inputs["x"], _state(inputs))}


@case("onnx_misc_ops")
def onnx_misc_ops(inputs, args):
    return {"logits": onnx_models.misc_ops_reference(inputs["x"], _state(inputs))}
