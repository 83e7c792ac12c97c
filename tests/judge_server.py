"""A real OpenAI-compatible chat-completions endpoint on 127.0.0.1 for the judge's tests: it answers from a
script (status, body, delay) and otherwise with a normal rated reply, and records every request."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

GOOD_REPLY = "The answer is correct and to the point.\n\n[[8]]"


@dataclass
class Response:
    """One scripted server response: a chat completion with ``content``, or ``status``/``body`` as given."""

    content: str | None = GOOD_REPLY
    status: int = 200
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


class FakeJudgeServer:
    """A chat-completions endpoint answering from a script; unscripted requests get a normal rated reply."""

    def __init__(self) -> None:
        self.script: list[Response] = []
        self.requests: list[dict] = []
        self.in_flight = self.most_in_flight = 0  # requests being answered now, and the most at once
        self.default_delay_s = 0.0
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def queue(self, *responses: Response) -> None:
        self.script.extend(responses)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def _next(self, request: dict) -> Response:
        with self._lock:
            self.requests.append(request)
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            return self.script.pop(0) if self.script else Response(delay_s=self.default_delay_s)

    def _done(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path != "/v1/chat/completions":
                    self._send(404, b'{"error": {"message": "no such route"}}', {})
                    return
                response = server._next({"authorization": self.headers.get("Authorization"), "body": body})
                time.sleep(response.delay_s)
                server._done()
                payload = response.body
                if payload is None:
                    payload = json.dumps(_completion(body["model"], response.content)).encode()
                try:
                    self._send(response.status, payload, response.headers)
                except OSError:  # the client gave up waiting (the timeout test)
                    pass

            def _send(self, status: int, payload: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (http.server's signature)
                """Keep the test output clean."""

        return Handler


def _completion(model: str, content: str | None) -> dict:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 1700000000,
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    }
