#!/usr/bin/python3
"""Runs one PyTorch reference case for the C++ tests.

usage: torch_reference.py CASE INPUTS.safetensors ARGS.json OUTPUTS.safetensors

Each case takes the tensors the C++ test wrote (inputs, weights) and a JSON object of arguments,
computes the same thing with PyTorch in float64 or float32 as asked, and writes the results
(outputs and gradients) for the test to compare. Cases live in cases_*.py, one file per area.
"""
import importlib
import json
import os
import sys

import torch

import safetensors_io

CASES = {}


def case(name):
    def register(fn):
        CASES[name] = fn
        return fn
    return register


def main():
    name, inp, args_path, out = sys.argv[1:5]
    torch.manual_seed(0)
    torch.set_num_threads(1)
    here = os.path.dirname(os.path.abspath(__file__))
    for f in sorted(os.listdir(here)):
        if f.startswith("cases_") and f.endswith(".py"):
            importlib.import_module(f[:-3])
    if name not in CASES:
        sys.exit(f"unknown reference case '{name}' (known: {', '.join(sorted(CASES))})")
    with open(args_path) as f:
        args = json.load(f)
    outputs = CASES[name](safetensors_io.load(inp), args)
    safetensors_io.save(out, outputs)


if __name__ == "__main__":
    sys.modules["torch_reference"] = sys.modules[__name__]
    main()
