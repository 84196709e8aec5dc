#!/usr/bin/env bash
# logging.trace on 2 DDP ranks (lenet, Fashion-MNIST, under tandem launch): the trace files parse
# as Chrome trace-event JSON, all.json has one process row per rank named "rank R", each rank has
# one "step" event per traced step, and everything recorded during a step lies inside it -- data,
# forward, backward, each module's backward inside backward, every bucket's all-reduce (its ready_us
# agreeing with its start), the optimizer and the sharded update's all-gather. Without
# logging.trace nothing is written.
#
#   trace_events.sh TANDEM_BINARY SOURCE_DIR
set -euo pipefail
tandem=$1 src=$2
[[ -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]] || { echo "SKIPPED: no data"; exit 77; }
work=$(mktemp -d /tmp/tandem-trace-XXXXXX)
trap 'rm -rf "$work"' EXIT
common=(strategy.name=ddp training.max_steps=10 data.workers=1 logging.progress=none
        training.eval_every_epoch=false checkpoint.every_steps=5 strategy.bucket_mb=4)
(cd "$work" && "$tandem" launch --nproc-per-node 2 "$src/configs/fashion_mnist_cnn.yaml" \
  "${common[@]}" logging.dir="$work/on" logging.trace=true 'logging.trace_steps=[3,7]' \
  >"$work/on.log" 2>&1) || { cat "$work/on.log"; echo "FAIL: the traced run failed"; exit 1; }
(cd "$work" && "$tandem" launch --nproc-per-node 2 "$src/configs/fashion_mnist_cnn.yaml" \
  "${common[@]}" logging.dir="$work/off" >"$work/off.log" 2>&1) || { echo "FAIL: untraced run"; exit 1; }
[ ! -e "$work/off/trace" ] || { echo "FAIL: a trace was written with logging.trace off"; exit 1; }
grep -q "trace: $work/on/trace/all.json (2 of 2 ranks, steps 3 to 6)" "$work/on.log" ||
  { cat "$work/on.log"; echo "FAIL: no trace line"; exit 1; }
/usr/bin/python3 - "$work/on/trace" <<'PY'
import json, sys
d = sys.argv[1]
merged = json.load(open(f"{d}/all.json"))
events = merged["traceEvents"]
names = {e["pid"]: e["args"]["name"] for e in events if e["ph"] == "M" and e["name"] == "process_name"}
assert names == {0: "rank 0", 1: "rank 1"}, names
for r in (0, 1):
    own = json.load(open(f"{d}/rank-{r}.json"))
    assert own["otherData"]["rank"] == r and own["otherData"]["format"] == "tandem-trace-1"
    ev = [e for e in events if e["ph"] == "X" and e["pid"] == r]
    steps = sorted((e for e in ev if e["name"] == "step"), key=lambda e: e["ts"])
    assert [int(s["args"]["step"]) for s in steps] == [3, 4, 5, 6], [s["args"] for s in steps]
    def inside(e, outer, slack=1.0):
        return outer["ts"] - slack <= e["ts"] and e["ts"] + e["dur"] <= outer["ts"] + outer["dur"] + slack
    def step_of(e):
        for s in steps:
            if inside(e, s):
                return s
        raise AssertionError(f"rank {r}: {e['name']} at {e['ts']} lies in no step")
    counts = {}
    for e in ev:
        name = e["name"]
        counts[name] = counts.get(name, 0) + 1
        if name in ("checkpoint", "eval", "step"):
            continue
        s = step_of(e)
        if e["name"] == "allreduce":
            assert abs(e["ts"] - s["ts"] - e["args"]["ready_us"]) < 1000, e
            assert e["args"]["bytes"] > 0 and e["args"]["backend"].startswith("shm"), e
        if e["name"].startswith("backward/"):
            back = [b for b in ev if b["name"] == "backward" and inside(b, s)]
            assert len(back) == 1 and inside(e, back[0]), e
    for name, n in (("data", 4), ("forward", 4), ("backward", 4), ("optimizer", 4), ("allgather", 4)):
        assert counts.get(name) == n, (r, name, counts)
    assert counts["allreduce"] >= 8, counts  # 4 MiB buckets: lenet's 13 MB in several
    modules = {e["name"] for e in ev if e["name"].startswith("backward/")}
    assert modules == {"backward/conv1", "backward/conv2", "backward/fc1", "backward/fc2"}, modules
    assert counts.get("checkpoint", 0) >= 1, counts  # step 5's save
    print(f"rank {r}: {sum(counts.values())} events, {counts['allreduce']} bucket all-reduces, nested in 4 steps")
PY
echo PASS
