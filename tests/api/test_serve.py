"""`hearth serve` through the official `openai` Python client, unchanged.

Run by `cargo xtask test` (or alone: `cargo xtask api`), which builds the release binary,
installs the pinned client into target/py and sets:
  HEARTH_BIN        the `hearth` binary
  HEARTH_TEST_MODEL SmolLM2-135M-Instruct Q4_1
  HEARTH_TESTDATA   ../shared/testdata (llama.cpp's greedy outputs on that model)

The server runs the CPU reference (`--backend cpu`), whose greedy tokens equal llama.cpp's on
the exact oracle (smollm2_exact_greedy.json: the same weights dequantized, f32 KV).
"""

import http.client
import json
import os
import subprocess
import threading
import time
import unittest
import urllib.parse

import openai

BIN = os.environ["HEARTH_BIN"]
MODEL = os.environ["HEARTH_TEST_MODEL"]
ORACLE = json.load(open(os.path.join(os.environ["HEARTH_TESTDATA"], "oracle", "smollm2_exact_greedy.json")))
# Two short oracle prompts (both end at the end-of-turn token) keep the suite short on two
# cores; hearth-model's oracle tests cover all eight.
CASES = [ORACLE[0], ORACLE[4]]
MODEL_ID = "SmolLM2-135M-Instruct.Q4_1"


class Server:
    """A `hearth serve` process on a free port."""

    def __init__(self, *extra):
        self.proc = subprocess.Popen(
            [BIN, "serve", "--model", MODEL, "--backend", "cpu", "--port", "0", *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        line = self.proc.stdout.readline()
        if not line.startswith("listening on "):
            self.proc.kill()
            raise RuntimeError(f"hearth serve did not start: {line!r} {self.proc.stderr.read()}")
        self.url = line.split()[-1]
        self.addr = urllib.parse.urlparse(self.url).netloc

    def client(self, **kw):
        kw.setdefault("api_key", "unused")
        kw.setdefault("timeout", 300)
        return openai.OpenAI(base_url=self.url + "/v1", max_retries=0, **kw)

    def raw(self, method, path, body=None, headers=None):
        """A request with exactly these headers: (status, parsed JSON)."""
        conn = http.client.HTTPConnection(self.addr, timeout=60)
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        data = r.read()
        conn.close()
        return r.status, json.loads(data) if data else None

    def health(self):
        return self.raw("GET", "/health")[1]

    def wait(self, what, timeout=120):
        end = time.time() + timeout
        while time.time() < end:
            h = self.health()
            if what(h):
                return h
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting; last /health: {h}")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.proc.stdout.close()
        self.proc.stderr.close()


def messages(case):
    return [{"role": "system", "content": case["system"]}, {"role": "user", "content": case["prompt"]}]


def greedy(case, **kw):
    return dict(model=MODEL_ID, messages=messages(case), temperature=0, max_tokens=len(case["greedy"]) + 4, **kw)


def expected_finish(case):
    # The oracle generated up to 48 tokens; fewer means it met the end-of-turn token.
    return "stop" if len(case["greedy"]) < 48 else "length"


class Api(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Server()
        cls.client = cls.server.client()

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def test_models_lists_the_served_model(self):
        models = self.client.models.list()
        self.assertEqual([m.id for m in models.data], [MODEL_ID])

    def test_greedy_replies_equal_the_oracle(self):
        for case in CASES:
            r = self.client.chat.completions.create(**greedy(case), extra_body={"hearth": {"tokens": True}})
            self.assertEqual(r.object, "chat.completion")
            self.assertTrue(r.id.startswith("chatcmpl-"))
            self.assertLess(abs(r.created - time.time()), 600)
            self.assertEqual(r.choices[0].message.role, "assistant")
            self.assertEqual(r.choices[0].message.content, case["greedy_text"])
            self.assertEqual(r.choices[0].finish_reason, expected_finish(case))
            self.assertEqual(r.model_extra["hearth"]["tokens"], case["greedy"])
            u = r.usage
            self.assertEqual(u.prompt_tokens, len(case["prompt_tokens"]))
            self.assertEqual(u.completion_tokens, len(case["greedy"]))
            self.assertEqual(u.total_tokens, u.prompt_tokens + u.completion_tokens)

    def test_streamed_replies_equal_the_oracle(self):
        for case in CASES:
            chunks = list(
                self.client.chat.completions.create(
                    **greedy(case), stream=True, stream_options={"include_usage": True}
                )
            )
            self.assertEqual(chunks[0].choices[0].delta.role, "assistant")
            self.assertEqual(len({c.id for c in chunks}), 1, "one id for the whole stream")
            with_choices = [c for c in chunks if c.choices]
            text = "".join(c.choices[0].delta.content or "" for c in with_choices)
            self.assertEqual(text, case["greedy_text"])
            self.assertEqual(with_choices[-1].choices[0].finish_reason, expected_finish(case))
            self.assertTrue(all(c.choices[0].finish_reason is None for c in with_choices[:-1]))
            last = chunks[-1]
            self.assertEqual(last.choices, [])
            self.assertEqual(last.usage.prompt_tokens, len(case["prompt_tokens"]))
            self.assertEqual(last.usage.completion_tokens, len(case["greedy"]))
            self.assertEqual(last.usage.total_tokens, last.usage.prompt_tokens + last.usage.completion_tokens)

    def test_a_conversation_that_grows_reuses_its_prefix(self):
        case = CASES[0]
        first = self.client.chat.completions.create(**greedy(case))
        follow = messages(case) + [
            {"role": "assistant", "content": first.choices[0].message.content},
            {"role": "user", "content": "And of Italy?"},
        ]
        second = self.client.chat.completions.create(model=MODEL_ID, messages=follow, temperature=0, max_tokens=4)
        cached = second.usage.prompt_tokens_details.cached_tokens
        self.assertGreaterEqual(cached, first.usage.prompt_tokens)
        self.assertLess(cached, second.usage.prompt_tokens)
        # A request for another conversation reuses only what it shares: SmolLM2's template
        # writes the same default system prompt the oracle cases give.
        other = self.client.chat.completions.create(
            model=MODEL_ID, messages=[{"role": "user", "content": "Hi"}], temperature=0, max_tokens=2
        )
        self.assertLess(other.usage.prompt_tokens_details.cached_tokens, first.usage.prompt_tokens - 5)

    def test_stop_strings_and_max_tokens(self):
        case = CASES[0]  # "The capital of France is Paris."
        r = self.client.chat.completions.create(**greedy(case), stop=["Paris", "never"])
        self.assertEqual(r.choices[0].message.content, case["greedy_text"].split("Paris")[0])
        self.assertEqual(r.choices[0].finish_reason, "stop")
        r = self.client.chat.completions.create(
            **{**greedy(case), "max_tokens": 3}, extra_body={"hearth": {"tokens": True}}
        )
        self.assertEqual(r.choices[0].finish_reason, "length")
        self.assertEqual(r.usage.completion_tokens, 3)
        self.assertEqual(r.model_extra["hearth"]["tokens"], case["greedy"][:3])
        # A stop string split across streamed pieces never leaks its start.
        text = "".join(
            c.choices[0].delta.content or ""
            for c in self.client.chat.completions.create(**greedy(case), stop=["France is P"], stream=True)
            if c.choices
        )
        self.assertEqual(text, "The capital of ")

    def test_refusals_name_the_field(self):
        case = CASES[0]
        for kw, param, code in [
            ({"logprobs": True}, "logprobs", "unsupported_parameter"),
            ({"n": 2}, "n", "unsupported_parameter"),
            ({"temperature": 5}, "temperature", "invalid_value"),
            ({"extra_body": {"mirostat": 2}}, "mirostat", "unsupported_parameter"),
        ]:
            with self.assertRaises(openai.BadRequestError) as e:
                self.client.chat.completions.create(**{**greedy(case), **kw})
            self.assertEqual(e.exception.status_code, 400)
            self.assertEqual(e.exception.code, code)
            self.assertEqual(e.exception.param, param)
        with self.assertRaises(openai.NotFoundError) as e:
            self.client.chat.completions.create(**{**greedy(case), "model": "gpt-4o"})
        self.assertEqual(e.exception.code, "model_not_found")

    def test_a_prompt_longer_than_the_context_is_refused(self):
        long = [{"role": "user", "content": "llama " * 5000}]
        with self.assertRaises(openai.BadRequestError) as e:
            self.client.chat.completions.create(model=MODEL_ID, messages=long, max_tokens=4)
        self.assertEqual(e.exception.code, "context_length_exceeded")
        self.assertEqual(e.exception.param, "messages")
        # ...and so is a streamed one, with its HTTP status rather than a stream.
        with self.assertRaises(openai.BadRequestError):
            self.client.chat.completions.create(model=MODEL_ID, messages=long, max_tokens=4, stream=True)

    def test_a_client_that_leaves_mid_stream_stops_its_generation(self):
        before = self.server.wait(lambda h: not h["busy"] and h["queued"] == 0)
        stream = self.client.chat.completions.create(
            model=MODEL_ID,
            messages=[{"role": "user", "content": "Write a long story about a llama."}],
            temperature=0,
            max_tokens=400,
            stream=True,
        )
        seen = 0
        for chunk in stream:
            seen += 1
            if seen == 4:
                break
        stream.close()
        after = self.server.wait(lambda h: h["interrupted"] > before["interrupted"] and not h["busy"])
        # The server notices at its next write: a few tokens on, far from 400.
        self.assertLess(after["last_tokens"], 40, after)
        r = self.client.chat.completions.create(**greedy(CASES[1]))
        self.assertEqual(r.choices[0].message.content, CASES[1]["greedy_text"])

    def test_a_client_that_leaves_a_whole_reply_stops_it_too(self):
        before = self.server.wait(lambda h: not h["busy"] and h["queued"] == 0)
        impatient = self.server.client(timeout=1.5)
        with self.assertRaises(openai.APITimeoutError):
            impatient.chat.completions.create(
                model=MODEL_ID,
                messages=[{"role": "user", "content": "Write a long story about a llama who sails."}],
                temperature=0,
                max_tokens=2000,
            )
        after = self.server.wait(lambda h: h["interrupted"] > before["interrupted"] and not h["busy"])
        self.assertLess(after["last_tokens"], 2000, after)

    def test_http_hygiene(self):
        body = json.dumps({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1})
        ok = {"Host": self.server.addr, "Content-Type": "application/json"}
        status, err = self.server.raw("POST", "/v1/chat/completions", body, {**ok, "Host": "evil.example:80"})
        self.assertEqual((status, err["error"]["code"]), (403, "invalid_host"))
        status, err = self.server.raw("GET", "/v1/models", None, {"Host": "rebind.attacker.test"})
        self.assertEqual(status, 403)
        status, err = self.server.raw("POST", "/v1/chat/completions", body, {**ok, "Content-Type": "text/plain"})
        self.assertEqual((status, err["error"]["code"]), (400, "invalid_body"))
        status, err = self.server.raw("POST", "/v1/chat/completions", "{not json", ok)
        self.assertEqual((status, err["error"]["code"]), (400, "invalid_body"))
        status, err = self.server.raw("POST", "/v1/chat/completions", "x" * (2 << 20), ok)
        self.assertEqual((status, err["error"]["code"]), (400, "invalid_body"))
        # Without --ui, / says what is here and how to get the chat UI.
        conn = http.client.HTTPConnection(self.server.addr, timeout=60)
        conn.request("GET", "/")
        r = conn.getresponse()
        page = r.read().decode()
        conn.close()
        self.assertEqual(r.status, 200)
        self.assertIn("/v1/chat/completions", page)
        self.assertIn("cargo xtask desktop", page)
        # No CORS header unless --cors-origin allows one.
        conn = http.client.HTTPConnection(self.server.addr, timeout=60)
        conn.request("GET", "/v1/models", headers={"Origin": "https://some.site"})
        r = conn.getresponse()
        r.read()
        self.assertEqual(r.status, 200)
        self.assertIsNone(r.getheader("Access-Control-Allow-Origin"))
        conn.close()


class Guarded(unittest.TestCase):
    """A server with an API key, a queue of one and one allowed CORS origin."""

    @classmethod
    def setUpClass(cls):
        cls.server = Server("--api-key", "s3cret", "--queue", "1", "--cors-origin", "http://localhost:5173")

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def test_the_api_key_is_required(self):
        with self.assertRaises(openai.AuthenticationError) as e:
            self.server.client(api_key="wrong").models.list()
        self.assertEqual(e.exception.status_code, 401)
        status, _ = self.server.raw("GET", "/v1/models", None, {"Host": self.server.addr})
        self.assertEqual(status, 401)
        self.assertEqual([m.id for m in self.server.client(api_key="s3cret").models.list().data], [MODEL_ID])

    def test_cors_only_for_the_allowed_origin(self):
        for origin, allowed in [("http://localhost:5173", True), ("https://evil.example", False)]:
            conn = http.client.HTTPConnection(self.server.addr, timeout=60)
            conn.request(
                "OPTIONS",
                "/v1/chat/completions",
                headers={
                    "Origin": origin,
                    "Access-Control-Request-Method": "POST",
                    "Access-Control-Request-Headers": "authorization, content-type",
                },
            )
            r = conn.getresponse()
            r.read()
            self.assertEqual(r.getheader("Access-Control-Allow-Origin") == origin, allowed, origin)
            conn.close()

    def test_a_full_queue_answers_503(self):
        client = self.server.client(api_key="s3cret")
        running = client.chat.completions.create(
            model=MODEL_ID,
            messages=[{"role": "user", "content": "Write a long story about a llama."}],
            temperature=0,
            max_tokens=400,
            stream=True,
        )
        next(iter(running))  # it runs
        self.server.wait(lambda h: h["busy"])
        waiting = threading.Thread(
            target=lambda: client.chat.completions.create(
                model=MODEL_ID, messages=[{"role": "user", "content": "Hi"}], max_tokens=1
            )
        )
        waiting.start()
        self.server.wait(lambda h: h["queued"] == 1)
        with self.assertRaises(openai.InternalServerError) as e:
            client.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": "Hi"}], max_tokens=1)
        self.assertEqual((e.exception.status_code, e.exception.code), (503, "queue_full"))
        running.close()
        waiting.join(timeout=120)
        self.assertFalse(waiting.is_alive())


if __name__ == "__main__":
    unittest.main(verbosity=2)
