"""A scriptable OpenAI-compatible chat-completions server for the `zerohar describe` tests.

A real HTTP server on 127.0.0.1 (port chosen by the OS) in a background thread, speaking
``POST /v1/chat/completions`` as the OpenAI API does. Each request takes the next *behaviour* from the
label's own script (``per_label``), else from the shared ``script``, else ``default``:

- ``"ok"``: exactly n descriptions (n read from the request's JSON schema), unique per label and index;
- ``"429"`` / ``"500"`` / ``"401"``: that HTTP status with an OpenAI-style error body (429 with Retry-After: 0;
  401 quotes the key it was sent, as a careless server might);
- ``"timeout"``: sleep ``sleep_s`` seconds (longer than the client's timeout), then answer normally;
- ``"malformed"``: message content that is not valid JSON;
- ``"refusal"``: ``message.refusal`` set and no content;
- ``"short"``: n - 1 descriptions.

Every request is recorded (path, headers with lower-case names, parsed body, label, behaviour) for the
tests to inspect.

Run by hand: ``python tests/llm_server.py --port 8765`` serves "ok" until Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BEHAVIOURS = ("ok", "429", "500", "401", "timeout", "malformed", "refusal", "short")


class LLMServer:
    """Scriptable fake of the OpenAI chat-completions endpoint (use as a context manager).

    Args:
        script: Behaviours for successive requests (any label), consumed in order.
        default: Behaviour once the scripts are used up.
        sleep_s: How long a "timeout" request sleeps before answering.
        port: 0 = any free port.
    """

    def __init__(self, script: list[str] | None = None, default: str = "ok", sleep_s: float = 2.0, port: int = 0):
        self.script = list(script or [])
        self.per_label: dict[str, list[str]] = {}
        self.default = default
        self.sleep_s = sleep_s
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        self._port = port
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> LLMServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                server._handle(self)

            def log_message(self, *args):  # keep test output clean
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", self._port), Handler)
        self._httpd.daemon_threads = True
        # A short poll interval: shutdown() waits up to one interval, once per test.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, name="llm-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> LLMServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    # ------------------------------------------------------------------ inspection
    @property
    def count(self) -> int:
        with self._lock:
            return len(self.requests)

    def labels_requested(self) -> list[str]:
        with self._lock:
            return [r["label"] for r in self.requests]

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()

    # ------------------------------------------------------------------ serving
    def _next(self, label: str) -> str:
        with self._lock:
            queue = self.per_label.get(label)
            if queue:
                return queue.pop(0)
            if self.script:
                return self.script.pop(0)
            return self.default

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        body = h.rfile.read(int(h.headers.get("Content-Length") or 0))
        if h.path.rstrip("/") != "/v1/chat/completions":
            return _send(h, 404, {"error": {"message": f"no route {h.path}", "type": "invalid_request_error"}})
        try:
            req = json.loads(body)
        except json.JSONDecodeError:
            return _send(h, 400, {"error": {"message": "request body is not JSON", "type": "invalid_request_error"}})
        user = next((m["content"] for m in reversed(req.get("messages", [])) if m.get("role") == "user"), "")
        m = re.search(r"Activity label:\s*(.+)", user)
        label = m.group(1).strip() if m else user.strip()
        try:
            n = int(req["response_format"]["json_schema"]["schema"]["properties"]["descriptions"]["minItems"])
        except (KeyError, TypeError, ValueError):
            n = 10
        behaviour = self._next(label)
        with self._lock:
            headers = {k.lower(): v for k, v in h.headers.items()}
            self.requests.append(
                {"path": h.path, "headers": headers, "body": req, "label": label, "behaviour": behaviour}
            )
        model = req.get("model", "")
        descs = [f"{label}: body movement number {i + 1}." for i in range(n)]
        if behaviour == "ok":
            return _send(h, 200, _completion(model, json.dumps({"descriptions": descs})))
        if behaviour == "short":
            return _send(h, 200, _completion(model, json.dumps({"descriptions": descs[:-1]})))
        if behaviour == "malformed":
            return _send(h, 200, _completion(model, '{"descriptions": ["' + label + ': an unfinished'))
        if behaviour == "refusal":
            return _send(h, 200, _completion(model, None, refusal="I'm sorry, I can't help with that."))
        if behaviour == "429":
            err = {"message": "Rate limit reached, try again", "type": "requests", "code": "rate_limit_exceeded"}
            return _send(h, 429, {"error": err}, {"Retry-After": "0"})
        if behaviour == "500":
            return _send(h, 500, {"error": {"message": "The server had an error", "type": "server_error"}})
        if behaviour == "401":
            # Worst case: a server that quotes the key it was sent in its error message.
            sent = h.headers.get("Authorization", "").removeprefix("Bearer ")
            err = {"message": f"Incorrect API key provided: {sent}.", "type": "invalid_request_error", "code": "bad"}
            return _send(h, 401, {"error": err})
        if behaviour == "timeout":
            time.sleep(self.sleep_s)
            return _send(h, 200, _completion(model, json.dumps({"descriptions": descs})))
        raise ValueError(f"unknown behaviour {behaviour!r}; expected one of {BEHAVIOURS}")


def _completion(model: str, content: str | None, refusal: str | None = None) -> dict:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": refusal},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


def _send(h: BaseHTTPRequestHandler, status: int, payload: dict, headers: dict | None = None) -> None:
    data = json.dumps(payload).encode()
    try:
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(data)
    except (BrokenPipeError, ConnectionResetError):  # the client gave up (a "timeout" request)
        pass


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="OpenAI-compatible test server (answers every request normally)")
    ap.add_argument("--port", type=int, default=0)
    a = ap.parse_args()
    with LLMServer(port=a.port) as srv:
        print(f"serving {srv.url}/chat/completions (Ctrl-C to stop)", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
