"""Reference cases for core/nn: layers, model names, forward/backward and one SGD step.

The models are torch_twins.py's PyTorch twins of tandem's (same structure, same parameter names).
Weights always come from the C++ side (tandem's initial state_dict), so only the structure and
the math are compared, never the random numbers.
"""
import torch
from torch import nn
import torch.nn.functional as F

from torch_reference import case
from torch_twins import BasicBlock, Bottleneck, conv1x1, make_model


# ------------------------------------------------------------------------------------ helpers
_DT = {torch.float32: "f32", torch.float64: "f64", torch.int64: "i64"}


def text(lines):
    """A list of strings as one u8 tensor (newline-joined UTF-8) for the C++ side to decode."""
    return torch.tensor(list("\n".join(lines).encode()), dtype=torch.uint8)


def listing(named):
    return text([f"{n} {_DT[t.dtype]} {list(t.shape)}" for n, t in named])


def strip(inputs, prefix):
    return {k[len(prefix):]: v for k, v in inputs.items() if k.startswith(prefix)}


# -------------------------------------------------------------------------------------- cases
@case("nn_model_keys")
def nn_model_keys(inputs, args):
    """For each model spec in args["models"] (one torch import for all): names, dtypes and
    shapes of the twin's parameters, buffers and state_dict in order, as "<i>.parameters" etc."""
    out = {}
    for i, spec in enumerate(args["models"]):
        m = make_model(spec)
        out[f"{i}.parameters"] = listing(m.named_parameters())
        out[f"{i}.buffers"] = listing(m.named_buffers())
        out[f"{i}.state_dict"] = listing(m.state_dict().items())
        out[f"{i}.num_parameters"] = torch.tensor(sum(p.numel() for p in m.parameters()))
    return out


@case("nn_model_step")
def nn_model_step(inputs, args):
    """Loads tandem's weights (state.*), runs x through the model in train or eval mode,
    cross-entropy against target, backward, then p -= lr * grad (all in f64 when args dtype is
    "f64"). Returns logits, loss, every parameter's gradient (grad.*) and the whole state after
    the step (after.*)."""
    m = make_model(args)
    if args.get("dtype") == "f64":
        m.double()
    m.load_state_dict(strip(inputs, "state."), strict=True)
    m.train(args["train"])
    logits = m(inputs["x"])
    loss = F.cross_entropy(logits, inputs["target"])
    loss.backward()
    out = {"logits": logits, "loss": loss}
    for n, p in m.named_parameters():
        out["grad." + n] = p.grad
    with torch.no_grad():
        for p in m.parameters():
            p -= args["lr"] * p.grad
    for n, t in m.state_dict().items():
        out["after." + n] = t
    return out


def make_block(kind, inplanes, planes, stride, downsample):
    """A ResNet block as ResNet._make_layer builds its first one (downsample: conv1x1 + BN)."""
    block = BasicBlock if kind == "BasicBlock" else Bottleneck
    ds = None
    if downsample:
        ds = nn.Sequential(conv1x1(inplanes, planes * block.expansion, stride),
                           nn.BatchNorm2d(planes * block.expansion))
    return block(inplanes, planes, stride, ds)


@case("nn_layer")
def nn_layer(inputs, args):
    """One torch.nn layer (or ResNet block) built from args (layer, kwargs, train) with tandem's
    parameters and buffers (p.*), in x's dtype: y = layer(x), backward of sum(y * w). Returns y, grad.x, grad.<param> and the
    buffers after the forward (state.<buffer>)."""
    kwargs = args.get("kwargs", {})
    if args["layer"] in ("BasicBlock", "Bottleneck"):
        m = make_block(args["layer"], **kwargs)
    else:
        m = getattr(nn, args["layer"])(**kwargs)
    if inputs["x"].dtype == torch.float64:
        m.double()
    m.load_state_dict(strip(inputs, "p."), strict=True)
    m.train(args.get("train", True))
    x = inputs["x"].clone().requires_grad_(True)
    y = m(x)
    (y * inputs["w"]).sum().backward()
    out = {"y": y, "grad.x": x.grad}
    for n, p in m.named_parameters():
        out["grad." + n] = p.grad
    for n, b in m.named_buffers():
        out["state." + n] = b
    return out
