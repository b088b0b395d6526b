# Generates Jinja2 (HF-configured) reference renders for the compat cases in tests/templates.rs.
import json, sys, jinja2
from jinja2 import nodes
from jinja2.ext import Extension
from jinja2.sandbox import ImmutableSandboxedEnvironment
from datetime import datetime

class AssistantTracker(Extension):
    tags = {"generation"}
    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return nodes.CallBlock(self.call_method("_render_assistant"), [], [], body).set_lineno(lineno)
    def _render_assistant(self, caller):
        return caller()

def raise_exception(m): raise jinja2.exceptions.TemplateError(m)
def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)
env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[AssistantTracker, jinja2.ext.loopcontrols])
env.filters['tojson'] = tojson
env.globals['raise_exception'] = raise_exception
env.globals['strftime_now'] = lambda f: datetime(2026, 11, 22).strftime(f)

MESSAGES = [
    {"role": "system", "content": "  Be brief.\n"},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello!"},
    {"role": "user", "content": "Thé ☕ 😀?"},
]
cases = json.load(open(sys.argv[1]))
out = []
for c in cases:
    name, src, extra = c["name"], c["template"], c.get("extra", {})
    try:
        t = env.from_string(src)
        kw = {"tools": None, "documents": None, **extra}
        r = t.render(messages=MESSAGES, add_generation_prompt=True,
                     bos_token="<s>", eos_token="</s>", **kw)
        out.append({"name": name, "template": src, "extra": extra, "expected": r})
    except Exception as e:
        out.append({"name": name, "template": src, "extra": extra, "error": str(e)})
json.dump(out, open(sys.argv[2], "w"), ensure_ascii=False, indent=1)
