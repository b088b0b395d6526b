#!/usr/bin/env bash
# In the browser against native, in one run on one machine: the GPU engine natively on
# lavapipe (`hearth bench --backend gpu`) and in headless Chromium on SwiftShader (the
# end-to-end first-visit tests, which record decode tok/s, first-token latency and the
# IndexedDB → GPU load), both on SmolLM2-135M-Instruct Q4_1. Prints one JSON line each.
# Needs what `cargo xtask test` needs (Chromium, Node, the web tool chain).
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=$(cargo xtask fetch-model)
cargo build --quiet --release -p hearth-cli
export VK_DRIVER_FILES=${VK_DRIVER_FILES:-/usr/share/vulkan/icd.d/lvp_icd.x86_64.json}
# 37 prompt tokens: the length of the first oracle prompt the browser test sends.
target/release/hearth bench --model "$MODEL" --backend gpu --prompt-tokens 37 --gen-tokens 32 --json 2>/dev/null |
  python3 -c 'import json,sys; d=json.load(sys.stdin); print(json.dumps({"engine": "native lavapipe", **d}))'
HEARTH_E2E_ONLY='first visit|offline' HEARTH_E2E_PROMPTS=${PROMPTS:-3} cargo xtask e2e >&2
python3 - <<'PY'
import json
r = json.load(open("target/e2e/results.json"))["metrics"]
prompts = [v for k, v in r.items() if k.startswith("prompt")]
toks = sum(p["tokens"] for p in prompts)
# Per prompt: tokens / decode rate = seconds decoding; the mean rate is tokens over seconds.
secs = sum(p["tokens"] / p["decode_tok_s"] for p in prompts if p["decode_tok_s"] > 0)
load = r.get("offline_load") or {}
print(json.dumps({
    "engine": "browser swiftshader",
    "decode_tokens_per_second": toks / secs if secs else None,
    "first_token_ms_cached_model": r.get("offline_first_token_ms"),
    "load_ms": load.get("load_ms"),
    "idb_read_mb_per_second": load.get("bytes", 0) / 1e6 / (load.get("read_ms", 0) / 1e3) if load.get("read_ms") else None,
    "idb_bytes_read": load.get("bytes"),
    "wasm_memory_after_load": load.get("wasm_memory"),
    "per_prompt": prompts,
}))
PY
