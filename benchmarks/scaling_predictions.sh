#!/usr/bin/env bash
# `tandem scaling` against published scaling results, then for tandem's ResNet-50 on 8 x H100
# nodes. Prints the markdown tables of benchmarks/RESULTS.md and docs/SCALING.md; every input and
# its source is in docs/SCALING.md. Takes a few seconds (no GPU, no network).
#
#   cmake --build build --target tandem && benchmarks/scaling_predictions.sh build/launcher/tandem
set -euo pipefail
tandem=${1:?usage: $0 path/to/tandem}

# Efficiency (%) on the last `nodes=` line, and the last relative to the first (vs_first).
last() { "$tandem" scaling "$@" | awk -F'efficiency=' '/^nodes=/ {v = $2} END {printf "%.1f", 100 * v}'; }
rel() {
  "$tandem" scaling "$@" |
    awk -F'efficiency=' '/^nodes=/ {if (!n++) f = $2; v = $2} END {printf "%.1f", 100 * v / f}'
}
# All sizes, one cell each.
row() { "$tandem" scaling "$@" | awk -F'efficiency=' '/^nodes=/ {printf " %.1f |", 100 * $2}'; }

# Horovod's benchmark (Sergeev & Del Balso 2018): 4 P100 per server over PCIe, 25 Gbit/s RoCE, one
# NCCL ring, tensor fusion 64 MiB every 5 ms, batch 64 per GPU; single-GPU throughput from
# TensorFlow's P100 benchmarks (ResNet-101 interpolated between ResNet-50 and -152 by FLOPs).
horovod=(--batch-per-gpu 64 --procs-per-node 4 --intra-gbps 128 --inter-gbps 25 --latency-us 5
  --algorithm ring --bucket-mb 64 --cycle-ms 5)
# Goyal et al. 2017: 8 P100 per server over NVLink, 50 Gbit/s Ethernet, reduce within the server,
# all-reduce across servers, broadcast back (hierarchical); 32 per GPU, 138 img/s per GPU.
goyal=(--model resnet50 --samples-per-s 138 --batch-per-gpu 32 --procs-per-node 8 --intra-gbps 320
  --inter-gbps 50 --algorithm hierarchical --nodes 1,32)
# ResNet-50 on 256 GPUs: hardware not given with the figures; assumed DGX-1 (8 V100, NVLink,
# 4 x 100 Gbit/s InfiniBand), FP32 at 128 per GPU, 412 img/s (NVIDIA's DGX-1 measurement).
dgx1=(--model resnet50 --samples-per-s 412 --batch-per-gpu 128 --procs-per-node 8
  --intra-gbps 1200 --inter-gbps 400 --algorithm ring --nodes 1,32)
# NVIDIA's TensorFlow ResNet-50 v1.5 weak scaling on one node (Horovod, fusion 64 MiB / 5 ms).
nvidia=(--model resnet50 --nodes 1 --bucket-mb 64 --cycle-ms 5)

echo "| case | published | predicted | difference |"
echo "|---|---:|---:|---:|"
p() { printf '| %s | %s | %s | %+.1f |\n' "$1" "$2" "$3" "$(echo "$3 - $2" | bc -l)"; }
p "Horovod, 512 GPUs, Inception V3" 90 "$(last --model inception_v3 --samples-per-s 142 --nodes 128 "${horovod[@]}")"
p "Horovod, 512 GPUs, ResNet-101" 90 "$(last --model resnet101 --samples-per-s 129 --nodes 128 "${horovod[@]}")"
p "Horovod, 512 GPUs, VGG-16" 68 "$(last --model vgg16 --samples-per-s 154 --nodes 128 "${horovod[@]}")"
p "Horovod, 128 GPUs, Inception V3" 90 "$(last --model inception_v3 --samples-per-s 142 --nodes 32 "${horovod[@]}")"
p "Horovod, 128 GPUs, ResNet-101" 90 "$(last --model resnet101 --samples-per-s 129 --nodes 32 "${horovod[@]}")"
p "Horovod, 128 GPUs, VGG-16" 79 "$(last --model vgg16 --samples-per-s 154 --nodes 32 "${horovod[@]}")"
p "Goyal et al., ResNet-50, 256 vs 8 GPUs" 90 "$(rel "${goyal[@]}")"
p "ResNet-50, 256 GPUs, TF MirroredStrategy (one pack after backward)" 90 \
  "$(last "${dgx1[@]}" --no-overlap --first-bucket-mb 128 --bucket-mb 128)"
p "ResNet-50, 256 GPUs, PyTorch DDP (25 MiB buckets)" 88 "$(last "${dgx1[@]}")"
p "NVIDIA DGX-1, 8 V100, FP32, batch 128" 96.1 \
  "$(last "${nvidia[@]}" --samples-per-s 412 --batch-per-gpu 128 --procs-per-node 8 --intra-gbps 1200)"
p "NVIDIA DGX-1, 8 V100, AMP, batch 256" 93.5 \
  "$(last "${nvidia[@]}" --samples-per-s 1270 --batch-per-gpu 256 --procs-per-node 8 --intra-gbps 1200)"
p "NVIDIA DGX A100, 8 A100, TF32, batch 256" 96.3 \
  "$(last "${nvidia[@]}" --samples-per-s 909 --batch-per-gpu 256 --procs-per-node 8 --intra-gbps 2400)"
p "NVIDIA DGX A100, 8 A100, AMP, batch 256" 91.5 \
  "$(last "${nvidia[@]}" --samples-per-s 2375 --batch-per-gpu 256 --procs-per-node 8 --intra-gbps 2400)"
p "NVIDIA DGX-2, 16 V100, FP32, batch 128" 94.1 \
  "$(last "${nvidia[@]}" --samples-per-s 432 --batch-per-gpu 128 --procs-per-node 16 --intra-gbps 1200)"
p "NVIDIA DGX-2, 16 V100, AMP, batch 256" 82.9 \
  "$(last "${nvidia[@]}" --samples-per-s 1300 --batch-per-gpu 256 --procs-per-node 16 --intra-gbps 1200)"

echo
echo "Sensitivity, Horovod at 512 GPUs (efficiency %): compute variation cv and bandwidth efficiency"
echo
echo "| model | cv 0, 90% | cv 3%, 80% | cv 3%, 90% (used) | cv 3%, 100% | static 64 MiB buckets |"
echo "|---|---:|---:|---:|---:|---:|"
for m in "inception_v3 142" "resnet101 129" "vgg16 154"; do
  set -- $m
  a=(--model "$1" --samples-per-s "$2" --nodes 128 "${horovod[@]}")
  printf '| %s | %s | %s | %s | %s | %s |\n' "$1" "$(last "${a[@]}" --compute-jitter 0)" \
    "$(last "${a[@]}" --bandwidth-efficiency 0.8)" "$(last "${a[@]}")" \
    "$(last "${a[@]}" --bandwidth-efficiency 1)" "$(last "${a[@]}" --cycle-ms 0)"
done

# tandem's own choices: ResNet-50 at configs/resnet50_synthetic.yaml's 32 per GPU (256 on 8 GPUs),
# 8 x H100 per node (NVLink 4: 450 GB/s each way), 400 Gbit/s InfiniBand per node, 6,900 img/s
# per H100 (MLPerf Training v3.0, see docs/SCALING.md).
h100=(--model resnet50 --samples-per-s 6900 --batch-per-gpu 32 --procs-per-node 8 --intra-gbps 3600
  --inter-gbps 400 --nodes 1,2,4,8,16,32)
echo
echo "ResNet-50 on 8 x H100 nodes, 400 Gbit/s per node, 32 per GPU (efficiency %)"
echo
echo "| all-reduce | buckets | 8 GPUs | 16 | 32 | 64 | 128 | 256 |"
echo "|---|---|---:|---:|---:|---:|---:|---:|"
for alg in ring hierarchical tree; do
  for b in 1 25 100; do
    echo "| $alg | 1 + $b MiB |$(row "${h100[@]}" --algorithm $alg --bucket-mb $b)"
  done
done
echo "| hierarchical | 1 + 25 MiB, bf16 gradients |$(row "${h100[@]}" --algorithm hierarchical --bucket-mb 25 --compression bf16)"
echo "| tree | 1 + 25 MiB, bf16 gradients |$(row "${h100[@]}" --algorithm tree --bucket-mb 25 --compression bf16)"
echo "| hierarchical | 1 + 25 MiB, 8 x 400 Gbit/s per node |$(row "${h100[@]}" --algorithm hierarchical --bucket-mb 25 --inter-gbps 3200)"
echo "| hierarchical | 1 + 25 MiB, 256 per GPU |$(row "${h100[@]}" --algorithm hierarchical --bucket-mb 25 --batch-per-gpu 256)"
echo "| hierarchical | 1 + 25 MiB, 1/4 of the H100's throughput |$(row "${h100[@]}" --algorithm hierarchical --bucket-mb 25 --samples-per-s 1725)"
