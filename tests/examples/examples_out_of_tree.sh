#!/usr/bin/env bash
# The examples, built as another project builds against tandem: `cmake --install` into a fresh
# prefix, then examples/ configured on its own with find_package(tandem) and built. Then:
#   - own_module trains its own Module subclass (exits 0 when the loss fell to a quarter);
#   - the GAN (two networks, two optimizers, two DDP reducers over one communicator) in fp64 under
#     `tandem launch --exec` on 2 ranks ends with the same weights on both ranks, and the same as
#     one process (checksums equal to 1e-9 relative).
#
#   examples_out_of_tree.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1 src=$2
[[ -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]] ||
  { echo "SKIPPED: dataset-fashion-mnist not installed"; exit 77; }
work=$(mktemp -d /tmp/tandem-examples-XXXXXX)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

cmake --install "$build" --prefix "$work/prefix" >/dev/null || fail "cmake --install"
[ -f "$work/prefix/lib/cmake/tandem/tandemConfig.cmake" ] || fail "no CMake package installed"
cmake -S "$src/examples" -B "$work/build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$work/prefix" >"$work/configure.log" 2>&1 ||
  { tail -20 "$work/configure.log"; fail "configuring the examples against the installed package"; }
cmake --build "$work/build" -j2 >"$work/build.log" 2>&1 ||
  { tail -30 "$work/build.log"; fail "building the examples"; }

"$work/build/own_module" >"$work/own.log" || { cat "$work/own.log"; fail "own_module did not learn"; }
tail -1 "$work/own.log"

tandem=$work/prefix/bin/tandem
(cd "$work" && "$work/build/gan" --steps 40 --fp64 >"$work/gan1.log" 2>&1) ||
  { cat "$work/gan1.log"; fail "gan on one process"; }
(cd "$work" && "$tandem" launch --nproc-per-node 2 --exec -- "$work/build/gan" --steps 40 --fp64 \
  >"$work/gan2.log" 2>&1) || { cat "$work/gan2.log"; fail "gan on 2 ranks under tandem launch"; }
grep -h checksum "$work/gan1.log" "$work/gan2.log"
/usr/bin/python3 - "$work/gan1.log" "$work/gan2.log" <<'PY'
import re, sys
def sums(path):
    return [tuple(map(float, m)) for m in
            re.findall(r"generator checksum (\S+) discriminator checksum (\S+)", open(path).read())]
one, two = sums(sys.argv[1]), sums(sys.argv[2])
assert len(one) == 1 and len(two) == 2, (one, two)
assert two[0] == two[1], f"the ranks disagree: {two}"
rel = max(abs(a - b) / abs(b) for a, b in zip(two[0], one[0]))
print(f"2 ranks vs 1 process: largest relative difference of the checksums {rel:.2e}")
sys.exit(0 if rel < 1e-9 else 1)
PY
echo PASS
