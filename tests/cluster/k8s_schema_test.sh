#!/usr/bin/env bash
# The manifests of `tandem submit k8s` validate against the Kubernetes API schema, offline
# (tests/cluster/k8s_schema/validate.js, kubernetes-models): both flavors, 1 and 4 nodes, with and
# without GPUs, with parameter servers; and the validator rejects broken manifests (so it can fail).
# kubernetes-models is installed with npm into CACHE (under the build directory) once; later runs
# are offline. If npm cannot install it, the test FAILS: it never passes without validating.
# Usage: k8s_schema_test.sh TANDEM SRC CACHE
set -uo pipefail
TANDEM="$1"
SRC="$2"
CACHE="$3"
CONFIG="$SRC/configs/fashion_mnist_mlp.yaml"
PY=/usr/bin/python3  # Debian's, which has python3-yaml

fail() { echo "FAIL: $*"; exit 1; }

mkdir -p "$CACHE"
cp "$SRC/tests/cluster/k8s_schema/package.json" "$SRC/tests/cluster/k8s_schema/validate.js" "$CACHE/"
if ! [ -f "$CACHE/node_modules/kubernetes-models/package.json" ] ||
   ! grep -q '"version": "4.5.1"' "$CACHE/node_modules/kubernetes-models/package.json"; then
  command -v npm >/dev/null || fail "npm not found: it installs kubernetes-models for this test"
  (cd "$CACHE" && timeout 300 npm install --no-audit --no-fund --no-package-lock >npm.log 2>&1) ||
    { cat "$CACHE/npm.log"; fail "npm could not install kubernetes-models into $CACHE (registry unreachable?)"; }
fi
"$PY" -c 'import yaml' || fail "$PY has no yaml module: install python3-yaml"

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
cd "$TMP" || exit 1

# validate NAME ARGS...: renders with --dry-run, converts to JSON, validates.
validate() {
  local name="$1"
  shift
  "$TANDEM" submit k8s "$CONFIG" --dry-run "$@" >"$name.yaml" 2>"$name.err" ||
    fail "$name: tandem submit k8s failed: $(cat "$name.err")"
  "$PY" -c 'import json, sys, yaml; json.dump(list(yaml.safe_load_all(sys.stdin)), sys.stdout)' \
    <"$name.yaml" >"$name.json" || fail "$name: not YAML"
  local result
  result="$(node "$CACHE/validate.js" <"$name.json" 2>&1)" || fail "$name: $result"
  echo "$name: $result"
}

for flavor in indexed mpijob; do
  for nodes in 1 4; do
    validate "$flavor-$nodes-cpu" --flavor "$flavor" --nodes "$nodes" strategy.name=ddp
    validate "$flavor-$nodes-gpu" --flavor "$flavor" --nodes "$nodes" --gpus-per-node 2 \
      training.device=cuda strategy.name=ddp
  done
  validate "$flavor-ps" --flavor "$flavor" --nodes 2 strategy.name=parameter_server strategy.num_ps=2
done
grep -q '^kind: MPIJob' mpijob-4-gpu.yaml || fail "mpijob flavor emitted no MPIJob"
grep -q 'nvidia.com/gpu: 2' indexed-4-gpu.yaml || fail "no GPU limit in indexed-4-gpu"

# The validator must reject what the API server would: a string count, a bad quantity, a bad enum.
broken() {
  local name="$1" expr="$2" src="$3"
  "$PY" -c "import json, sys
docs = json.load(open('$src.json'))
$expr
json.dump(docs, sys.stdout)" >"$name.json"
  if node "$CACHE/validate.js" <"$name.json" >"$name.out" 2>&1; then
    fail "$name: the validator accepted a broken manifest"
  fi
  echo "$name rejected: $(head -c 200 "$name.out")"
}
broken bad-completions "[d for d in docs if d['kind'] == 'Job'][0]['spec']['completions'] = 'four'" indexed-4-cpu
broken bad-gpu-quantity "[d for d in docs if d['kind'] == 'Job'][0]['spec']['template']['spec']['containers'][0]['resources']['limits']['nvidia.com/gpu'] = 'two gpus'" indexed-4-gpu
broken bad-restart-policy "[d for d in docs if d['kind'] == 'Job'][0]['spec']['template']['spec']['restartPolicy'] = 7" indexed-1-cpu
broken bad-mpijob-template "[d for d in docs if d['kind'] == 'MPIJob'][0]['spec']['mpiReplicaSpecs']['Worker']['template']['spec']['containers'][0]['ports'] = [{'containerPort': 'x'}]" mpijob-4-gpu
broken bad-mpijob-slots "[d for d in docs if d['kind'] == 'MPIJob'][0]['spec']['slotsPerWorker'] = 0" mpijob-1-cpu
echo PASS
