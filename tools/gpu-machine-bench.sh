#!/usr/bin/env bash
# Runs linseq's benchmarks and tests on a GPU machine that has no Vulkan loader installed
# (the device machine used for BENCHMARKS.md). Prepare on the build machine, from the repo root:
#
#   echo /.gl/ >> .git/info/exclude; mkdir -p .gl /tmp/amd64/partial
#   o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
#   apt-get $o update; (cd .gl && apt-get $o download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
#   tools/gpu-machine-bench.sh --prepare      # builds, strips into out/
#
# then, on the GPU machine, in the repo root with .gl/ and out/ present:
#
#   tools/gpu-machine-bench.sh [OUTDIR]
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--prepare" ]; then
    cargo build --release --all-targets
    mkdir -p out
    strip -o out/linseq target/release/linseq
    strip -o out/engine-tests "$(ls -t target/release/deps/engine-* | grep -v '\.d$' | head -1)"
    ls -la out
    exit 0
fi

outdir=${1:-${OUT:-/tmp/linseq-bench}}
mkdir -p "$outdir"
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
[ -f "$icd" ] && export VK_DRIVER_FILES=$icd
export LINSEQ_BACKEND=vulkan
./out/linseq adapters | grep -v '^  features' | tee "$outdir/adapters.txt"
./out/linseq bench core --json "$outdir/bench.json" | tee "$outdir/bench.txt"
./out/engine-tests --test-threads 1 2>&1 | grep -v '^\[' | tail -3
