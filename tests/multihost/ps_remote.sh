#!/usr/bin/env bash
# parameter_server with its servers on another host than the workers, and what listens where, on
# 3 emulated hosts:
#   - the store of `tandem launch --rdzv-endpoint <h0 address>:PORT` listens on h0's address only
#     (never 0.0.0.0), and an agent on h1 with a wrong token is refused with an error saying so;
#   - the store speaks TLS (the job's certificate, lib.sh): an agent without the certificate stops
#     with a one-line error (exit 2), one in plaintext or with another job's certificate is refused;
#   - two `tandem ps` servers on h2 listen on h2's address only, and a worker on h0 with a wrong
#     token, or in plaintext, is refused;
#   - workers on h0 and h1 (`tandem launch`, one per host) train against the servers on h2 in sync
#     mode and end with the weights and optimizer state of one process (within 1e-5, as on one
#     host); the servers stop once every worker finished.
#
#   ps_remote.sh TANDEM_BINARY SOURCE_DIR BUILD_DIR
set -uo pipefail
tandem=$1 src=$2 build=$3
source "$src/tests/multihost/lib.sh"
data=/usr/share/datasets/fashion-mnist
[[ -e $data/train-images-idx3-ubyte.gz ]] || mh_skip "$data not found"
/usr/bin/python3 -c 'import torch' 2>/dev/null || mh_skip "python3-torch not installed"
mh_setup ps 4 3
cfg=$src/configs/fashion_mnist_mlp.yaml
common=(training.max_steps=20 data.batch_size=32 data.workers=1 optimizer.lr=2e-4
        checkpoint.resume=never logging.progress=none logging.tensorboard=false
        training.eval_every_epoch=false)
h0=$(mh_addr h0) h2=$(mh_addr h2)
token=mh-ps-remote-token

listeners() {  # HOST PORT: the local addresses HOST listens on at PORT (IPv4-mapped as IPv4)
  mh_on "$1" ss -Hltn "sport = :$2" | awk '{print $4}' | sed 's/^\[::ffff:\(.*\)\]:/\1:/' |
    sort -u | tr '\n' ' '
}

# --- the store: h0's address only; a wrong token from h1 is refused.
mh_bg "$MH_WORK/store.log" h0 env TANDEM_JOB_TOKEN=$token "$tandem" launch --nnodes 2 \
  --node-rank 0 --rdzv-endpoint "$h0:29700" --nproc-per-node 1 --rdzv-timeout 60 "$cfg"
store_agent=$MH_PID
for _ in $(seq 100); do [ -n "$(listeners h0 29700)" ] && break; sleep 0.1; done
got=$(listeners h0 29700)
[ "$got" = "$h0:29700 " ] || mh_fail "the store listens on '$got', expected $h0:29700 only"
echo "store listens on: $got"
out=$(mh_on h1 env TANDEM_JOB_TOKEN=not-the-token "$tandem" launch --nnodes 2 --node-rank 1 \
  --rdzv-endpoint "$h0:29700" --nproc-per-node 1 --rdzv-timeout 10 "$cfg" 2>&1)
rc=$?
[ $rc != 0 ] || mh_fail "an agent with a wrong token joined the job"
grep -q "wrong job token" <<<"$out" || mh_fail "the refusal does not say why: $out"
grep -q "not-the-token\|$token" <<<"$out" && mh_fail "a token was printed: $out"
echo "wrong token from h1: $(tail -1 <<<"$out")"
# TLS across hosts (the job's certificate comes from lib.sh): an agent without the certificate
# stops at once with one line naming what to set (exit 2); one that talks plaintext, or trusts
# another job's certificate, never gets through.
out=$(mh_on h1 env -u TANDEM_TLS_CERT TANDEM_JOB_TOKEN=$token "$tandem" launch --nnodes 2 \
  --node-rank 1 --rdzv-endpoint "$h0:29700" --nproc-per-node 1 --rdzv-timeout 10 "$cfg" 2>&1)
rc=$?
[ $rc = 2 ] || mh_fail "an agent without the job's certificate exited $rc, expected 2: $out"
[ "$(wc -l <<<"$out")" = 1 ] || mh_fail "expected a one-line error: $out"
grep -q "TANDEM_TLS_CERT is not set" <<<"$out" || mh_fail "the error does not name TANDEM_TLS_CERT: $out"
echo "no certificate on h1: $out"
mh_tls_pair "$MH_WORK/tls/other_job" || mh_fail "openssl could not make a second certificate"
for how in TANDEM_TLS=0 TANDEM_TLS_CERT=$MH_WORK/tls/other_job.crt; do
  out=$(mh_on h1 env "$how" TANDEM_JOB_TOKEN=$token "$tandem" launch --nnodes 2 --node-rank 1 \
    --rdzv-endpoint "$h0:29700" --nproc-per-node 1 --rdzv-timeout 5 "$cfg" 2>&1)
  [ $? != 0 ] || mh_fail "an agent with $how joined the job"
  grep -q "found no store" <<<"$out" || mh_fail "with $how: $out"
  echo "${how%%=*}=${how#*=}: refused ($(grep -o 'found no store[^:]*' <<<"$out" | head -1))"
done
kill -TERM $store_agent
mh_wait $store_agent 20 >/dev/null

# --- two servers on h2, listening on h2's address only.
for s in 0 1; do
  mh_bg "$MH_WORK/ps$s.log" h2 env TANDEM_JOB_TOKEN=$token "$tandem" ps --shard $s --host "$h2" \
    --port $((29710 + s)) "$cfg" "${common[@]}" strategy.name=parameter_server strategy.num_ps=2 \
    strategy.mode=sync
  servers+=("$MH_PID")
done
for s in 0 1; do
  for _ in $(seq 100); do grep -q "listening on" "$MH_WORK/ps$s.log" && break; sleep 0.1; done
  got=$(listeners h2 $((29710 + s)))
  [ "$got" = "$h2:$((29710 + s)) " ] || mh_fail "server $s listens on '$got'"
done
echo "servers listen on: $(listeners h2 29710)$(listeners h2 29711)"
endpoints="$h2:29710,$h2:29711"
out=$(mh_on h0 env TANDEM_JOB_TOKEN=not-the-token TANDEM_PS_ENDPOINTS=$endpoints LOCAL_RANK=0 \
  RANK=0 WORLD_SIZE=2 LOCAL_WORLD_SIZE=1 MASTER_ADDR=$h0 MASTER_PORT=29799 "$tandem" train "$cfg" \
  "${common[@]}" strategy.name=parameter_server strategy.num_ps=2 strategy.mode=sync \
  strategy.timeout_s=20 checkpoint.dir="$MH_WORK/refused/ck" logging.dir="$MH_WORK/refused/log" 2>&1)
[ $? != 0 ] || mh_fail "a worker with a wrong token trained against the servers"
grep -q "wrong job token" <<<"$out" || mh_fail "the servers' refusal does not say why: $out"
echo "wrong token from h0 to h2's servers: $(grep -o 'wrong job token[^;:]*' <<<"$out" | head -1)"
out=$(mh_on h0 env TANDEM_TLS=0 TANDEM_JOB_TOKEN=$token TANDEM_PS_ENDPOINTS=$endpoints LOCAL_RANK=0 \
  RANK=0 WORLD_SIZE=2 LOCAL_WORLD_SIZE=1 MASTER_ADDR=$h0 MASTER_PORT=29799 "$tandem" train "$cfg" \
  "${common[@]}" strategy.name=parameter_server strategy.num_ps=2 strategy.mode=sync \
  strategy.timeout_s=5 checkpoint.dir="$MH_WORK/plain/ck" logging.dir="$MH_WORK/plain/log" 2>&1)
[ $? != 0 ] || mh_fail "a plaintext worker trained against the TLS servers"
grep -q "parameter server shard" <<<"$out" || mh_fail "the plaintext worker's error: $out"
echo "plaintext from h0 to h2's servers: $(grep -o 'parameter server shard.*' <<<"$out" | head -1 | cut -c1-160)"

# --- the workers on h0 and h1, the servers on h2.
for i in 0 1; do
  mh_bg "$MH_WORK/worker.h$i.log" "h$i" env TANDEM_JOB_TOKEN=$token TANDEM_PS_ENDPOINTS=$endpoints \
    "$tandem" launch --nnodes 2 --node-rank $i --rdzv-endpoint "$h0:29720" --nproc-per-node 1 \
    --rdzv-timeout 60 "$cfg" "${common[@]}" strategy.name=parameter_server strategy.num_ps=2 \
    strategy.mode=sync checkpoint.dir="$MH_WORK/ps_sync/ck" logging.dir="$MH_WORK/ps_sync/log"
  workers+=("$MH_PID")
done
for i in 0 1; do
  mh_wait "${workers[$i]}" 240 || { tail -20 "$MH_WORK/worker.h$i.log"; mh_fail "worker host h$i failed"; }
done
for s in 0 1; do
  mh_wait "${servers[$s]}" 30 || { tail "$MH_WORK/ps$s.log"; mh_fail "server $s did not stop by itself"; }
  grep -q "stopping: every worker finished" "$MH_WORK/ps$s.log" || mh_fail "server $s: $(tail -2 "$MH_WORK/ps$s.log")"
done
"$tandem" train "$cfg" "${common[@]}" training.threads=1 checkpoint.dir="$MH_WORK/single/ck" \
  logging.dir="$MH_WORK/single/log" >"$MH_WORK/single.log" 2>&1 || mh_fail "the reference run failed"
/usr/bin/python3 - "$MH_WORK" "$src/tests/reference" <<'PY' || mh_fail "the remote-server run differs from one process"
import glob, sys
work, ref = sys.argv[1], sys.argv[2]
sys.path.insert(0, ref)
import safetensors_io
def load(name, what):
    paths = sorted(glob.glob(f"{work}/{name}/ck/step-*/{what}.safetensors"))
    assert paths and paths[-1].endswith(f"step-00000020/{what}.safetensors"), paths
    return safetensors_io.load(paths[-1])
failed = False
for what in ("model", "optimizer"):
    base, other = load("single", what), load("ps_sync", what)
    assert other.keys() == base.keys()
    worst = max(float((other[k].double() - base[k].double()).abs().max()) for k in base)
    failed |= worst > 1e-5
    print(f"servers on h2, workers on h0 and h1, {what}: max |x - x_single| = {worst:.3e}")
sys.exit(1 if failed else 0)
PY
echo PASS
