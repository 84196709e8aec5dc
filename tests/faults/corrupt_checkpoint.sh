#!/usr/bin/env bash
# The newest checkpoint damaged on disk, one cell per kind of damage:
#   truncated  -- model.safetensors cut to half its length
#   bitflip    -- one bit of optimizer.safetensors' last tensor flipped
#   header     -- a dtype in model.safetensors' JSON header edited ("F32" -> "I32", same length)
#   missing    -- optimizer.safetensors deleted
# A run of 200 steps saves step-100 and step-200; step-200 is damaged; the same command with
# training.max_steps=250 must name step-200 and what is wrong with it in a warning, resume from
# step-100, save a sound step-200 in place of the damaged one, and end with the same weights, bit for
# bit, as a run of 250 steps nobody damaged.
#
#   corrupt_checkpoint.sh TANDEM_BINARY SOURCE_DIR truncated|bitflip|header|missing
set -uo pipefail
tandem=$1 src=$2 kind=$3
source "$src/tests/faults/lib.sh"
ft_setup "corrupt-$kind"
cfg=$FT_WORK/exp.yaml
ft_experiment "$cfg" "checkpoint: {every_steps: 100, keep: 3, resume: auto}"
train() {  # NAME STEPS
  timeout 120 "$tandem" train "$cfg" checkpoint.dir="$FT_WORK/$1" training.max_steps="$2" \
    >>"$FT_WORK/$1.log" 2>&1 || { tail "$FT_WORK/$1.log"; ft_fail "the $1 run to step $2 failed"; }
}
train clean 250
train damaged 200
newest=$FT_WORK/damaged/step-00000200
/usr/bin/python3 - "$newest" "$kind" <<'PY' || ft_fail "could not damage the checkpoint"
import json, os, struct, sys
ck, kind = sys.argv[1], sys.argv[2]
model, opt = f"{ck}/model.safetensors", f"{ck}/optimizer.safetensors"
if kind == "truncated":
    os.truncate(model, os.path.getsize(model) // 2)
elif kind == "bitflip":
    with open(opt, "r+b") as f:
        f.seek(-1, os.SEEK_END)
        b = f.read(1)[0]
        f.seek(-1, os.SEEK_END)
        f.write(bytes([b ^ 0x10]))
elif kind == "header":
    data = bytearray(open(model, "rb").read())
    (n,) = struct.unpack("<Q", data[:8])
    header = data[8:8 + n].decode()
    assert '"F32"' in header, header[:200]
    data[8:8 + n] = header.replace('"F32"', '"I32"', 1).encode()
    open(model, "wb").write(data)
elif kind == "missing":
    os.remove(opt)
else:
    sys.exit(f"unknown kind {kind}")
PY
echo "damaged ($kind): $newest"
train damaged 250
log=$FT_WORK/damaged.log
warning=$(grep "^warning: .*step-00000200" "$log") ||
  { tail "$log"; ft_fail "no warning names the damaged step-200"; }
echo "$warning"
case $kind in
  truncated) want="model.safetensors" ;;
  bitflip) want="optimizer.safetensors" ;;
  header) want="model.safetensors" ;;
  missing) want="optimizer.safetensors" ;;
esac
grep -q "$want" <<<"$warning" || ft_fail "the warning does not name $want"
grep -q "resumed from $FT_WORK/damaged/step-00000100 (step 100" "$log" ||
  { grep resumed "$log"; ft_fail "the run did not resume from step-100, the newest sound checkpoint"; }
echo "$(ft_show "resumed from .*" "$log")"
/usr/bin/python3 - "$FT_WORK" "$src/tests/reference" <<'PY' || ft_fail "the resumed run differs from the clean run"
import sys
work, ref = sys.argv[1], sys.argv[2]
sys.path.insert(0, ref)
import safetensors_io
for step in ("00000200", "00000250"):
    for what in ("model", "optimizer"):
        a = safetensors_io.load(f"{work}/clean/step-{step}/{what}.safetensors")
        b = safetensors_io.load(f"{work}/damaged/step-{step}/{what}.safetensors")
        assert a.keys() == b.keys(), (step, what)
        for k in a:
            assert a[k].numpy().tobytes() == b[k].numpy().tobytes(), (step, what, k)
print("step-200 (saved again) and step-250 equal the clean run's, bit for bit (model and optimizer)")
PY
ft_check_clean
echo PASS
