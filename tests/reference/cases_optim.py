"""Reference cases for core/optim: optimizers trained on a fixed least-squares problem, learning-rate
schedulers, and clip_grad_norm_, all with torch's own implementations."""
import torch

from torch_reference import case

_DTYPES = {"f32": torch.float32, "f64": torch.float64}


def _optimizer(name, params, options):
    if name == "sgd":
        return torch.optim.SGD(params, **options)
    if name == "adam":
        return torch.optim.Adam(params, **options)
    if name == "adamw":
        return torch.optim.AdamW(params, **options)
    raise ValueError(f"unknown optimizer {name}")


@case("optim_train")
def optim_train(inputs, args):
    """For each run: `steps` updates of loss = mean((x @ w.T + b - y)^2) from (w, b). The bias grad
    is dropped (set to None) for the first `bias_grad_none_steps` steps, so the optimizer skips it."""
    out = {}
    for i, run in enumerate(args["runs"]):
        dt = _DTYPES[run["dtype"]]
        x, y = inputs["x"].to(dt), inputs["y"].to(dt)
        w = inputs["w"].to(dt).clone().requires_grad_()
        b = inputs["b"].to(dt).clone().requires_grad_()
        opt = _optimizer(run["optimizer"], [w, b], run["options"])
        for s in range(args["steps"]):
            opt.zero_grad()
            loss = ((x @ w.t() + b - y) ** 2).mean()
            loss.backward()
            if s < run.get("bias_grad_none_steps", 0):
                b.grad = None
            opt.step()
        out[f"{i}.weight"] = w.detach()
        out[f"{i}.bias"] = b.detach()
    return out


def _scheduler(opt, spec):
    kind, warmup = spec["kind"], spec.get("warmup_steps", 0)
    if kind == "constant":
        main = None
    elif kind == "step":
        main = torch.optim.lr_scheduler.StepLR(opt, step_size=spec["step_size"], gamma=spec["gamma"])
    elif kind == "cosine":
        main = torch.optim.lr_scheduler.CosineAnnealingLR(
            opt, T_max=spec["total_steps"] - warmup, eta_min=spec["min_lr"])
    else:
        raise ValueError(kind)
    if not warmup:
        return main
    linear = torch.optim.lr_scheduler.LinearLR(
        opt, start_factor=spec["warmup_start_factor"], end_factor=1.0, total_iters=warmup)
    if main is None:
        return linear
    return torch.optim.lr_scheduler.SequentialLR(opt, [linear, main], milestones=[warmup])


@case("optim_schedules")
def optim_schedules(inputs, args):
    """The learning rate torch's schedulers give for steps 0..steps-1 (lr after s scheduler steps)."""
    out = {}
    for i, spec in enumerate(args["schedules"]):
        p = torch.zeros(1, requires_grad=True)
        opt = torch.optim.SGD([p], lr=spec["base_lr"])
        sched = _scheduler(opt, spec)
        lrs = []
        for _ in range(args["steps"]):
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            if sched is not None:
                sched.step()
        out[str(i)] = torch.tensor(lrs, dtype=torch.float64)
    return out


@case("optim_clip_grad_norm")
def optim_clip_grad_norm(inputs, args):
    """clip_grad_norm_ per set: parameters whose grads are the inputs "<prefix>.g0", "<prefix>.g1", ..."""
    out = {}
    for spec in args["sets"]:
        prefix = spec["prefix"] + "."
        names = sorted((k for k in inputs if k.startswith(prefix)), key=lambda k: int(k[len(prefix) + 1:]))
        params = []
        for name in names:
            p = torch.zeros_like(inputs[name], requires_grad=True)
            p.grad = inputs[name].clone()
            params.append((name, p))
        total = torch.nn.utils.clip_grad_norm_([p for _, p in params], spec["max_norm"])
        out.update({name: p.grad for name, p in params})
        out[prefix + "total_norm"] = torch.tensor(float(total), dtype=torch.float64)
    return out
