#!/usr/bin/env bash
# The GPU check: one command that, on a machine with a real GPU and no Rust toolchain, runs
# the GPU kernel and tiny-model tests and measures decode speed, from binaries built
# beforehand. Each section has its own timeout and prints its figures as soon as it has
# them; everything is teed to $LOG, so a run cut short still returns what it measured.
#
#   scripts/gpu_check.sh --pack    here, with Rust: build the release binaries, copy them
#                                  stripped (no debug info) into .gpu-pack/, fetch the Vulkan
#                                  loader's .deb into .gl/, and check that what travels is
#                                  under 48 MiB
#   scripts/gpu_check.sh           there: run everything (about 5 minutes on a GPU)
#   scripts/gpu_check.sh --small   small shapes: shows it works end to end on lavapipe
#
# Figures to record in BENCHMARKS.md: the adapter, each test section's result, the GEMV's
# GB/s at Llama-2-7B's shapes (weights rotated over 256 MB, more than any L2), the cost of a
# dispatch boundary, and `hearth bench` (tok/s, MBU against the peak named, dispatches and
# submits per token, GPU time per kernel family from --profile) for Llama-2-7B Q4_0 and
# Q4_K_M at 32 and 512 prompt tokens (at 512, decode attention runs split-K with a merge).
set -uo pipefail
cd "$(dirname "$0")/.."
PACK=.gpu-pack
LOG=${LOG:-gpu_check.log}
LIMIT_MIB=48

pack() {
  set -e
  # The usual release build (incremental, shared with the tests), stripped of its debug
  # info and symbols when copied: the same code, a fifth of the size.
  cargo build --release -p hearth-cli
  cargo build --release -p hearth-gpu --example kernel_time
  # The test binaries' paths, from cargo's own report.
  local tests
  tests=$(cargo test --release -p hearth-gpu --lib --test tiny_models --no-run --message-format=json |
    python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        print(m["target"]["name"], m["executable"])')
  rm -rf $PACK && mkdir -p $PACK
  cp target/release/hearth target/release/examples/kernel_time $PACK/
  while read -r name exe; do
    case $name in
      hearth_gpu) cp "$exe" $PACK/kernel_tests ;;
      tiny_models) cp "$exe" $PACK/tiny_models ;;
    esac
  done <<<"$tests"
  strip $PACK/hearth $PACK/kernel_time $PACK/kernel_tests $PACK/tiny_models
  cp -r crates/hearth-model/tests/fixtures $PACK/fixtures
  if [ ! -d .gl ] || ! ls .gl/libvulkan1_*.deb >/dev/null 2>&1; then
    mkdir -p .gl /tmp/amd64/partial
    local o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
    # shellcheck disable=SC2086
    apt-get $o update -qq && (cd .gl && apt-get $o download libvulkan1)
  fi
  grep -qx '/.gpu-pack/' .git/info/exclude 2>/dev/null || echo /.gpu-pack/ >>.git/info/exclude
  grep -qx '/.gl/' .git/info/exclude 2>/dev/null || echo /.gl/ >>.git/info/exclude
  ls -l $PACK .gl
  local bytes
  bytes=$(du -cb $PACK .gl | tail -1 | cut -f1)
  echo "to carry: $PACK and .gl, $((bytes / 1024 / 1024)) MiB (limit $LIMIT_MIB MiB)"
  if [ "$bytes" -ge $((LIMIT_MIB * 1024 * 1024)) ]; then
    echo "too large to carry" >&2
    exit 1
  fi
}

if [ "${1:-}" = --pack ]; then
  pack
  exit
fi
SMALL=
[ "${1:-}" = --small ] && SMALL=1
[ -x $PACK/hearth ] || { echo "no $PACK/: run scripts/gpu_check.sh --pack first (where Rust is)" >&2; exit 1; }

exec > >(tee -a "$LOG") 2>&1
echo "== gpu_check $(date -u +%FT%TZ) ${SMALL:+(small shapes)}"

# A machine without a Vulkan loader: unpack the carried one (as the device tool's README does).
if ! ldconfig -p 2>/dev/null | grep -q 'libvulkan.so.1' && ls .gl/*.deb >/dev/null 2>&1; then
  for f in .gl/*.deb; do dpkg -x "$f" /; done
  ldconfig
fi
nvidia_icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if [ -z "${VK_DRIVER_FILES:-}" ] && [ -f $nvidia_icd ]; then
  export VK_DRIVER_FILES=$nvidia_icd
fi
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader

section() {
  local name=$1 seconds=$2
  shift 2
  echo
  echo "== $name (timeout ${seconds}s)"
  local start=$SECONDS
  timeout "$seconds" "$@"
  local rc=$?
  echo "-- $name: exit $rc after $((SECONDS - start)) s"
}

if [ -n "$SMALL" ]; then
  # On a CPU adapter the full kernel tests take many minutes: one test per op family.
  section "kernel tests (subset)" 600 $PACK/kernel_tests --test-threads 2 \
    rope attention_matches embedding sample elementwise every_kernel gemv_loads
else
  section "kernel tests" 240 $PACK/kernel_tests --test-threads 4
fi
section "tiny models, GPU against the CPU reference" 300 env HEARTH_FIXTURES=$PACK/fixtures $PACK/tiny_models

kernels=$(mktemp)
section "decode GEMV at Llama-2-7B shapes${SMALL:+ (small: about a quarter per side)}" 180 $PACK/kernel_time gemv ${SMALL:+small} | tee "$kernels"
section "dispatch boundary" 60 $PACK/kernel_time boundary

# The peak bandwidth MBU is taken against, by the adapter's name (datasheet figures).
adapter=$(grep -m1 "kernels)$" "$kernels")
case $adapter in
  *H200*) peak=4800 ;;
  *H100*PCIe*) peak=2000 ;;
  *H100*) peak=3350 ;;
  *A100*) peak=2039 ;;
  *4090*) peak=1008 ;;
  *L40S*) peak=864 ;;
  *L4*) peak=300 ;;
  *) peak= ;;
esac
echo
echo "adapter: $adapter; peak for MBU: ${peak:-unknown (no MBU)} GB/s"

if [ -n "$SMALL" ]; then
  shape=tiny prompts="32 128" quants="Q4_0 Q4_K_M"
else
  shape=llama2-7b prompts="32 512" quants="Q4_0 Q4_K_M"
fi
for quant in $quants; do
  for prompt in $prompts; do
    section "hearth bench $shape $quant, $prompt prompt tokens" 150 \
      $PACK/hearth bench --synthetic $shape --quant $quant --backend gpu --prompt-tokens "$prompt" \
      --gen-tokens 32 --profile --json ${peak:+--peak-gbps $peak}
  done
done
rm -f "$kernels"
echo
echo "== done $(date -u +%FT%TZ); log: $LOG"
