#!/usr/bin/env python3
"""llama.cpp's built-in Gemma chat format (llama_chat_apply_template with the template name
"gemma": src/llama-chat.cpp, LLM_CHAT_TEMPLATE_GEMMA), through llama-cpp-python 0.3.36's
bindings, for a few conversations: the oracle for Hearth's Gemma fallback template
(`gemma_fallback_renders_as_llama_cpp` in ../templates.rs), used for GGUFs whose vocabulary
has <start_of_turn> but which carry no chat template (Gemma 3 270M base, say).

Run: python3 make_renders.py  (writes renders.json)
"""

import ctypes
import json
from pathlib import Path

import llama_cpp

HERE = Path(__file__).resolve().parent
CONVERSATIONS = {
    "one_turn": [{"role": "user", "content": "What is 2+2?"}],
    "system_and_history": [
        {"role": "system", "content": "  Be brief.\n"},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello! "},
        {"role": "user", "content": " Name a prime.\n"},
    ],
    "two_systems": [
        {"role": "system", "content": "A."},
        {"role": "system", "content": "B."},
        {"role": "user", "content": "Go"},
    ],
}


def apply(messages, add_ass=True):
    arr = (llama_cpp.llama_chat_message * len(messages))()
    keep = []
    for i, m in enumerate(messages):
        role, content = m["role"].encode(), m["content"].encode()
        keep += [role, content]
        arr[i].role, arr[i].content = role, content
    buf = ctypes.create_string_buffer(1 << 16)
    n = llama_cpp.llama_chat_apply_template(b"gemma", arr, len(messages), add_ass, buf, len(buf))
    assert 0 < n < len(buf), n
    return buf.raw[:n].decode()


out = [{"conversation": name, "messages": msgs, "expected": apply(msgs)} for name, msgs in CONVERSATIONS.items()]
(HERE / "renders.json").write_text(json.dumps(out, ensure_ascii=False, indent=1) + "\n")
for r in out:
    print(r["conversation"], repr(r["expected"]))
