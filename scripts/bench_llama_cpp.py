#!/usr/bin/env python3
"""llama.cpp's CPU speed on a GGUF, measured the way `hearth generate --json` reports its own:
prefill tok/s over the prompt, decode tok/s over the generated tokens (greedy).

Needs `pip install llama-cpp-python==0.3.36` (compiles llama.cpp; ~10 min on 2 cores).
Usage: scripts/bench_llama_cpp.py MODEL.gguf PROMPT_TOKENS.json N_GEN [--exact-kv]
PROMPT_TOKENS.json is a JSON array of token ids (e.g. from `hearth tokenize --json`), so both
engines run the very same tokens. --exact-kv uses an f32 KV cache (Hearth's CPU reference
uses f32 throughout; llama.cpp's default is f16 K/V and 8-bit activations for Q4_1).
"""
import json
import sys
import time

import llama_cpp


def main():
    model, tokens_file, n_gen = sys.argv[1], sys.argv[2], int(sys.argv[3])
    exact = "--exact-kv" in sys.argv
    tokens = json.load(open(tokens_file))
    kw = dict(type_k=0, type_v=0) if exact else {}
    llm = llama_cpp.Llama(model_path=model, n_ctx=2048, n_threads=2, n_batch=512, verbose=False, **kw)
    for _ in range(2):  # first run warms caches and page-ins; report the second
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(tokens)
        t1 = time.perf_counter()
        out = []
        for _ in range(n_gen):
            tok = llm.sample(temp=0.0)
            out.append(tok)
            llm.eval([tok])
        t2 = time.perf_counter()
    print(json.dumps({
        "engine": "llama.cpp (llama-cpp-python %s)%s" % (llama_cpp.__version__, " f32 KV" if exact else ""),
        "prompt_tokens": len(tokens),
        "prompt_tokens_per_second": len(tokens) / (t1 - t0),
        "generated_tokens": n_gen,
        "generate_tokens_per_second": n_gen / (t2 - t1),
    }))


if __name__ == "__main__":
    main()
