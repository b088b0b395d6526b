#!/usr/bin/env python3
"""Reference renders of the templates with a thinking switch, by Python Jinja2 configured as
Hugging Face transformers renders chat templates (as ../jinja_compat/gen.py): the oracle for
`thinking_switch_renders_as_jinja2` in ../templates.rs.

The templates are llama.cpp's copies (models/templates in the llama-cpp-python 0.3.36 sdist
on PyPI): Qwen-Qwen3-0.6B.jinja (Qwen's, Apache-2.0) and HuggingFaceTB-SmolLM3-3B.jinja
(Hugging Face's, Apache-2.0). Each is rendered for two conversations with enable_thinking
unset, true and false. Run: python3 make_renders.py  (needs jinja2; 3.1.6 made renders.json)
"""

import json
from datetime import datetime
from pathlib import Path

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

HERE = Path(__file__).resolve().parent
TEMPLATES = ["Qwen-Qwen3-0.6B.jinja", "HuggingFaceTB-SmolLM3-3B.jinja"]
CONVERSATIONS = {
    "one_turn": [{"role": "user", "content": "What is 2+2?"}],
    "with_history": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "<think>\nGreet back.\n</think>\n\nHello!"},
        {"role": "user", "content": "Name a prime."},
    ],
}


def raise_exception(m):
    raise jinja2.exceptions.TemplateError(m)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
env.filters["tojson"] = tojson
env.globals["raise_exception"] = raise_exception
env.globals["strftime_now"] = lambda f: datetime(2026, 11, 22).strftime(f)

out = []
for name in TEMPLATES:
    t = env.from_string((HERE / name).read_text())
    for conv, messages in CONVERSATIONS.items():
        for thinking in [None, True, False]:
            extra = {} if thinking is None else {"enable_thinking": thinking}
            text = t.render(messages=messages, add_generation_prompt=True, bos_token="<s>", eos_token="</s>",
                            tools=None, documents=None, **extra)
            out.append({"template": name, "conversation": conv, "messages": messages,
                        "enable_thinking": thinking, "expected": text})
(HERE / "renders.json").write_text(json.dumps(out, ensure_ascii=False, indent=1) + "\n")
print(len(out), "renders")
