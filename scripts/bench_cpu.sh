#!/usr/bin/env bash
# Side by side on one machine: Hearth's CPU reference and llama.cpp (CPU, 2 threads) on the
# same model and the very same prompt tokens, greedy. Prints one JSON line per engine.
# Needs: cargo xtask fetch-model; pip install llama-cpp-python==0.3.36.
set -euo pipefail
cd "$(dirname "$0")/.."
N_PROMPT=${N_PROMPT:-128}
N_GEN=${N_GEN:-64}
MODEL=$(cargo xtask fetch-model)
cargo build --quiet --release -p hearth-cli
HEARTH=target/release/hearth
TEXT=../shared/testdata/oracle/perplexity_text.md
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The first N_PROMPT tokens of the perplexity text, as text and as ids.
$HEARTH tokenize --model "$MODEL" --file "$TEXT" --json |
  python3 -c "import json,sys; print(json.dumps(json.load(sys.stdin)[:$N_PROMPT]))" > "$work/prompt.json"
python3 - "$MODEL" "$work/prompt.json" > "$work/prompt.txt" <<'PY'
import json, sys, llama_cpp
llm = llama_cpp.Llama(model_path=sys.argv[1], vocab_only=True, verbose=False)
sys.stdout.write(llm.detokenize(json.load(open(sys.argv[2]))).decode())
PY

for run in 1 2; do  # the first run warms the page cache; report the second
  out=$($HEARTH generate --model "$MODEL" --prompt "$(cat "$work/prompt.txt")" --temperature 0 \
        --max-tokens "$N_GEN" --stop "@@never@@" --json)
done
echo "$out" | python3 -c "
import json,sys; o=json.load(sys.stdin); t=o['timings']
print(json.dumps({'engine':'hearth cpu reference (f32)','prompt_tokens':t['prompt_tokens'],
  'prompt_tokens_per_second':t['prompt_tokens_per_second'],'generated_tokens':t['generated_tokens'],
  'generate_tokens_per_second':t['generate_tokens_per_second']}))"
python3 scripts/bench_llama_cpp.py "$MODEL" "$work/prompt.json" "$N_GEN"
python3 scripts/bench_llama_cpp.py "$MODEL" "$work/prompt.json" "$N_GEN" --exact-kv
