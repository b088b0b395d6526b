#!/usr/bin/env bash
# One run, one machine: `hearth bench` on the GPU backend (lavapipe here; a real GPU where
# there is one) and the CPU reference, beside llama.cpp's CPU path on the same model and the
# same number of tokens. Prints one JSON line per engine.
# Needs: cargo xtask fetch-model; pip install llama-cpp-python==0.3.36.
# MODEL=<path> benches another GGUF (say "$(cargo xtask fetch-gemma)").
set -euo pipefail
cd "$(dirname "$0")/.."
N_PROMPT=${N_PROMPT:-64}
N_GEN=${N_GEN:-16}
MODEL=${MODEL:-$(cargo xtask fetch-model)}
cargo build --quiet --release -p hearth-cli
HEARTH=target/release/hearth
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for backend in gpu cpu; do
  $HEARTH bench --model "$MODEL" --backend $backend --prompt-tokens "$N_PROMPT" --gen-tokens "$N_GEN" --json \
    ${PEAK_GBPS:+--peak-gbps "$PEAK_GBPS"} 2>/dev/null
done
# llama.cpp on the first N_PROMPT tokens of the perplexity text (token content does not
# change the speed), greedy.
$HEARTH tokenize --model "$MODEL" --file ../shared/testdata/oracle/perplexity_text.md --json |
  python3 -c "import json,sys; print(json.dumps(json.load(sys.stdin)[:$N_PROMPT]))" > "$work/prompt.json"
python3 scripts/bench_llama_cpp.py "$MODEL" "$work/prompt.json" "$N_GEN"
