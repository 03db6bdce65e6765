import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from registry.backends import BackendError, Generation, OpenAIBackend

GEN = Generation(max_new_tokens=8)
CHAT = [{"role": "user", "content": "Which option? Answer: X"}]


class FakeServer:
    """An OpenAI-compatible /v1/chat/completions and /v1/completions on 127.0.0.1; `script` gives (status, headers, delay) per request number."""

    def __init__(self, script=None):
        self.script = script or {}
        self.requests: list[dict] = []
        self.paths: list[str] = []
        self.headers: list[dict] = []
        self.in_flight = self.max_in_flight = 0
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    n = len(server.requests)
                    server.requests.append(body)
                    server.headers.append(dict(self.headers))
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                status, headers, delay = server.script.get(n, (200, {}, 0.0))
                time.sleep(delay)
                server.paths.append(self.path)
                if status != 200:
                    payload = {"error": {"message": f"scripted {status}"}}
                elif self.path.endswith("/chat/completions"):
                    reply = f"Answer: {body['messages'][-1]['content'][-1]}"
                    payload = {"choices": [{"message": {"role": "assistant", "content": reply}}], "usage": {"completion_tokens": 3}}
                else:  # /v1/completions
                    payload = {"choices": [{"index": 0, "text": "so the answer is C.", "finish_reason": "stop"}], "usage": {"completion_tokens": 6}}
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                finally:
                    with server.lock:
                        server.in_flight -= 1

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    servers = []

    def start(script=None):
        servers.append(FakeServer(script))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


def test_a_500_then_success_is_retried_by_the_client(server, monkeypatch):
    srv = server({0: (500, {}, 0.0)})
    monkeypatch.setenv("LOCAL_KEY", "sk-test")
    done = OpenAIBackend(srv.url, "served-model", "LOCAL_KEY").request(CHAT, GEN)
    assert done.text == "Answer: X" and done.tokens == 3
    assert len(srv.requests) == 2
    assert {k.lower(): v for k, v in srv.headers[1].items()}["authorization"] == "Bearer sk-test"
    body = srv.requests[1]
    assert body["model"] == "served-model" and body["max_tokens"] == 8 and body["temperature"] == 0.0 and body["messages"] == CHAT
    assert "seed" not in body  # greedy


def test_429_honours_retry_after_and_gives_up_after_max_retries(server):
    srv = server({0: (429, {"Retry-After": "2"}, 0.0)})
    start = time.perf_counter()
    assert OpenAIBackend(srv.url, "m").request(CHAT, GEN).text == "Answer: X"
    assert 2 <= time.perf_counter() - start < 4
    always = server({i: (503, {}, 0.0) for i in range(10)})
    with pytest.raises(BackendError, match="HTTP 503 after 2 retries"):
        OpenAIBackend(always.url, "m", max_retries=2).request(CHAT, GEN)
    assert len(always.requests) == 3


def test_client_errors_are_not_retried(server):
    srv = server({0: (400, {}, 0.0)})
    with pytest.raises(BackendError, match="HTTP 400"):
        OpenAIBackend(srv.url, "m").request(CHAT, GEN)
    assert len(srv.requests) == 1


def test_a_timeout_is_retried(server):
    srv = server({0: (200, {}, 1.5)})
    assert OpenAIBackend(srv.url, "m", timeout_s=0.5).request(CHAT, GEN).text == "Answer: X"
    assert len(srv.requests) == 2


def test_concurrency_is_bounded_and_order_kept(server):
    srv = server({i: (200, {}, 0.1) for i in range(12)})
    chats = [[{"role": "user", "content": f"question {i} -> {'ABCDEFGHIJKL'[i]}"}] for i in range(12)]
    done = OpenAIBackend(srv.url, "m", concurrency=3).generate(chats, GEN)
    assert [c.text for c in done] == [f"Answer: {'ABCDEFGHIJKL'[i]}" for i in range(12)]
    assert srv.max_in_flight == 3


def test_prefill_and_template_options_go_in_the_body_only_where_declared(server):
    srv = server()
    prefilled = [*CHAT, {"role": "assistant", "content": "Let me reason. The answer is C"}]
    sampled = Generation(max_new_tokens=8, temperature=0.7, seed=3)
    OpenAIBackend(srv.url, "m", continue_final_message=True, template_kwargs={"enable_thinking": True}).request(prefilled, sampled)
    body = srv.requests[0]
    assert body["continue_final_message"] is True and body["add_generation_prompt"] is False
    assert body["chat_template_kwargs"] == {"enable_thinking": True} and body["seed"] == 3 and body["temperature"] == 0.7
    with pytest.raises(BackendError, match="continue_final_message"):
        OpenAIBackend(srv.url, "m").generate([CHAT, prefilled], GEN)
    assert len(srv.requests) == 1  # refused before anything was sent


def test_a_thinking_prefill_is_rendered_locally_and_sent_as_token_ids_to_completions(server, smollm_tokenizer, tmp_path):
    """A vLLM server's Qwen3 template would close thinking before the prefill: the endpoint gets the prompt as token ids."""
    smollm_tokenizer.save_pretrained(tmp_path)
    (tmp_path / "chat_template.jinja").write_text((Path(__file__).parent / "fixtures/qwen3_like_chat_template.jinja").read_text())
    srv = server()
    thinking = [*CHAT, {"role": "assistant", "content": "<think>\nVitamin K reverses heparin.\n\nWait, let me reconsider."}]
    backend = OpenAIBackend(srv.url, "served", continue_final_message=True, template_kwargs={"enable_thinking": True},
                            sampling_extras=True, tokenizer=(str(tmp_path), None))  # fmt: skip
    (done,) = backend.generate([thinking], GEN)
    assert srv.paths == ["/v1/completions"] and done.text == "so the answer is C." and done.tokens == 6
    body = srv.requests[0]
    prompt = smollm_tokenizer.decode(body["prompt"])
    expected = (
        "<|im_start|>user\nWhich option? Answer: X<|im_end|>\n<|im_start|>assistant\n<think>\nVitamin K reverses heparin.\n\nWait, let me reconsider."
    )
    assert prompt == expected and "</think>" not in prompt  # the trace sits inside the one open think block
    assert (body["max_tokens"], body["temperature"], body["top_k"], body["repetition_penalty"]) == (8, 0.0, 0, 1.0)
    assert "messages" not in body and "continue_final_message" not in body
    backend.generate([[*CHAT, {"role": "assistant", "content": "The answer is"}]], GEN)  # no think block: the chat path
    assert srv.paths[-1] == "/v1/chat/completions" and srv.requests[-1]["continue_final_message"] is True
    with pytest.raises(BackendError, match="source.endpoint.tokenizer"):
        OpenAIBackend(srv.url, "served", continue_final_message=True).generate([CHAT, thinking], GEN)
    assert len(srv.requests) == 2  # refused before anything was sent


def test_an_endpoints_tokenizer_is_local_or_a_pinned_hub_revision(tmp_path):
    from registry.backends import make_backend
    from registry.catalog import Model
    from registry.params import Runtime

    def entry(tokenizer: str, revision: str | None = None) -> Model:
        endpoint = {
            "base_url": "http://127.0.0.1:1/v1",
            "model": "served",
            "sampling_extras": True,
            "tokenizer": tokenizer,
            "tokenizer_revision": revision,
        }
        return Model(name="served", title="t", source={"endpoint": endpoint}, family="general", size="8B", backend="openai",
                     chat={"think": "strip", "continue_final_message": True},
                     generation={"max_new_tokens": 8, "temperature": 0.6, "top_p": 0.95, "top_k": 20, "repetition_penalty": 1.0})  # fmt: skip

    runtime = Runtime(backend=None, batch_size=1, flush_every=1, tensor_parallel_size=1, concurrency=1, max_retries=0, timeout_s=1,
                      allow_unpinned=False, vllm={})  # fmt: skip
    (tmp_path / "tok").mkdir()
    assert make_backend(entry("tok"), runtime, tmp_path).tokenizer_location == (str(tmp_path / "tok"), None)
    assert make_backend(entry("Qwen/Qwen3-8B", "abc123"), runtime, tmp_path).tokenizer_location == ("Qwen/Qwen3-8B", "abc123")
    with pytest.raises(BackendError, match=r"model 'served': the tokenizer Qwen/Qwen3-8B is not pinned"):
        make_backend(entry("Qwen/Qwen3-8B"), runtime, tmp_path)
    unpinned = runtime.model_copy(update={"allow_unpinned": True})
    assert make_backend(entry("Qwen/Qwen3-8B"), unpinned, tmp_path).tokenizer_location == ("Qwen/Qwen3-8B", None)
