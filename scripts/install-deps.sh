#!/usr/bin/env bash
# Installs the Debian 12 packages tandem builds and tests with, skipping those already present.
# Idempotent and quiet when nothing is missing; needs root (or sudo) only when something is.
set -euo pipefail

packages=(
  build-essential cmake ninja-build ccache pkg-config git iproute2 util-linux
  clang-format-14                              # tests/format: the formatting check
  libgtest-dev libgmock-dev
  libopenblas-openmp-dev libdnnl-dev zlib1g-dev
  libyaml-cpp-dev libcli11-dev nlohmann-json3-dev
  libprotobuf-dev protobuf-compiler
  libonnx-dev                                  # onnx.proto, compiled for model.onnx
  libturbojpeg0-dev libpng-dev                 # image_folder: JPEG and PNG decoding
  python3 python3-numpy python3-yaml python3-torch python3-torchvision python3-protobuf
  python3-onnx python3-pil                     # tests: ONNX exports, image folders written by PIL
  libopenmpi-dev openmpi-bin libgrpc++-dev protobuf-compiler-grpc libgloo-dev
  libssl-dev openssl                           # the job's TLS certificate; openssl: tests/multihost
  dataset-fashion-mnist
  slurmctld slurmd slurm-client munge   # tests/cluster: a real Slurm controller on localhost
)

# `install-deps.sh fuzz` (make fuzz) also brings clang with libFuzzer and its OpenMP runtime;
# make test and make sanitize need only the packages above (GCC ships ASan, UBSan and TSan).
if [ "${1:-}" = fuzz ]; then
  packages+=(clang-14 libomp-14-dev llvm-14)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# npm (tests/cluster/k8s_schema_test.sh installs kubernetes-models with it): Debian's, unless a
# Node.js that brings its own npm is already installed.
command -v npm >/dev/null || missing+=(npm)
[ ${#missing[@]} -eq 0 ] && exit 0

echo "install-deps: installing ${missing[*]}"
sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
