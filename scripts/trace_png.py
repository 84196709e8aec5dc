#!/usr/bin/python3
"""Draws a tandem trace (logging.trace: trace/all.json or rank-R.json) as a PNG timeline: one band
per rank, one row per lane (compute, communication, io), each event a box coloured by its name,
the steps of the window marked along the top. For documentation and quick looks where Perfetto
is not at hand; it needs only Pillow (Debian's python3-pil).

usage: scripts/trace_png.py TRACE.json OUT.png [--steps FIRST,LAST] [--width 1600]
"""
import argparse
import json
import sys

from PIL import Image, ImageDraw, ImageFont

COLOURS = {
    "step": (235, 235, 235), "data": (166, 206, 227), "forward": (31, 120, 180),
    "backward": (178, 223, 138), "optimizer": (51, 160, 44), "allreduce": (251, 154, 153),
    "allgather": (227, 26, 28), "checkpoint": (253, 191, 111), "eval": (202, 178, 214),
}
LANES = {0: "compute", 1: "comm", 2: "data", 3: "io"}
ROW, BAND_GAP, LEFT, TOP = 22, 14, 150, 40


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("trace")
    ap.add_argument("out")
    ap.add_argument("--steps", help="FIRST,LAST: draw only these steps (default: all traced)")
    ap.add_argument("--width", type=int, default=1600)
    args = ap.parse_args()
    try:
        events = [e for e in json.load(open(args.trace))["traceEvents"] if e.get("ph") == "X"]
    except (OSError, ValueError, KeyError) as e:
        sys.exit(f"trace_png: {args.trace}: not a trace-event JSON file ({e})")
    steps = sorted((e for e in events if e["name"] == "step"), key=lambda e: e["ts"])
    if args.steps:
        first, last = (int(v) for v in args.steps.split(","))
        steps = [s for s in steps if first <= s["args"]["step"] <= last]
    if not steps:
        sys.exit(f"trace_png: {args.trace}: no step events to draw")
    t0 = min(s["ts"] for s in steps)
    t1 = max(s["ts"] + s["dur"] for s in steps)
    events = [e for e in events if e["ts"] < t1 and e["ts"] + e["dur"] > t0]
    ranks = sorted({e["pid"] for e in events})
    lanes = sorted({e["tid"] for e in events if e["name"] != "step"})
    band = ROW * len(lanes)
    height = TOP + len(ranks) * (band + BAND_GAP) + 60
    img = Image.new("RGB", (args.width, height), "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    scale = (args.width - LEFT - 20) / (t1 - t0)
    x = lambda t: LEFT + (min(max(t, t0), t1) - t0) * scale  # noqa: E731  (clipped to the window)
    draw.text((10, 10), f"{args.trace}: {len(ranks)} rank(s), {(t1 - t0) / 1000:.1f} ms", fill="black",
              font=font)
    for b, rank in enumerate(ranks):
        y0 = TOP + b * (band + BAND_GAP)
        for s in (s for s in steps if s["pid"] == rank):
            draw.rectangle([x(s["ts"]), y0, x(s["ts"] + s["dur"]), y0 + band - 2],
                           fill=COLOURS["step"], outline=(160, 160, 160))
            draw.text((x(s["ts"]) + 2, y0 - 12), f"step {s['args']['step']:.0f}", fill="grey", font=font)
        for li, lane in enumerate(lanes):
            y = y0 + li * ROW
            draw.text((10, y + 5), f"rank {rank} {LANES.get(lane, lane)}", fill="black", font=font)
            for e in (e for e in events if e["pid"] == rank and e["tid"] == lane and e["name"] != "step"):
                name = e["name"].split("/")[0]
                inset = 6 if "/" in e["name"] else 2  # per-module backward: thinner, inside backward
                box = [x(e["ts"]), y + inset, max(x(e["ts"]) + 1, x(e["ts"] + e["dur"])), y + ROW - inset]
                draw.rectangle(box, fill=COLOURS.get(name, (150, 150, 150)), outline="white")
    lx = LEFT
    ly = height - 30
    for name, colour in COLOURS.items():
        draw.rectangle([lx, ly, lx + 14, ly + 14], fill=colour, outline="grey")
        draw.text((lx + 18, ly + 2), name, fill="black", font=font)
        lx += 110
    img.save(args.out)
    print(f"wrote {args.out} ({args.width}x{height})")


if __name__ == "__main__":
    main()
