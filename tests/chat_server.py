"""A small OpenAI-compatible chat server over real HTTP on 127.0.0.1, for judge tests.

It judges by rule, so outcomes are known: a response containing GOOD rates 9, any other rates
2; in pairwise prompts the response with GOOD wins, and when neither (or both) has it the
server says A, a deliberate position bias that the judge's order swapping must cancel. A
request containing GARBLE gets a reply with no verdict in it.
`faults` are HTTP statuses returned, in order, before any real answer. `GET /v1/models` lists
`models`, as an OpenAI server does.

`/v1/completions` answers with `complete(prompt)`: a scripted "model" (e.g. a dataset's reference
solution for its prompt), so an eval through lm-eval's API backend scores known outputs.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class ChatServer:
    def __init__(
        self,
        faults: list[int] | None = None,
        complete: Callable[[str], str] | None = None,
        models: tuple[str, ...] = ("judge",),
    ) -> None:
        self.faults = list(faults or [])
        self.models = models
        self.complete = complete
        self.requests: list[dict[str, Any]] = []
        self.auth: list[str] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                if not self.path.endswith("/models"):
                    self._send(404, {"error": {"message": "not found"}})
                    return
                data = [{"id": m, "object": "model"} for m in server.models]
                self._send(200, {"object": "list", "data": data})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.requests.append(body)
                    server.auth.append(self.headers.get("Authorization", ""))
                    fault = server.faults.pop(0) if server.faults else None
                if fault is not None:
                    self._send(
                        fault, {"error": {"message": f"injected {fault}"}}, {"retry-after-ms": "10"}
                    )
                    return
                if self.path.endswith("/completions") and "messages" not in body:
                    prompts = (
                        body["prompt"] if isinstance(body["prompt"], list) else [body["prompt"]]
                    )
                    choices = [
                        {"index": i, "text": server.complete(p), "finish_reason": "stop"}  # type: ignore[misc]
                        for i, p in enumerate(prompts)
                    ]
                    self._send(
                        200,
                        {
                            "id": "cmpl-test",
                            "object": "text_completion",
                            "created": 0,
                            "model": body["model"],
                            "choices": choices,
                        },
                    )
                    return
                reply = server.answer(body["messages"][-1]["content"])
                self._send(
                    200,
                    {
                        "id": "chatcmpl-test",
                        "object": "chat.completion",
                        "created": 0,
                        "model": body["model"],
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": reply},
                                "finish_reason": "stop",
                            }
                        ],
                        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                    },
                )

            def _send(self, status: int, payload: dict, headers: dict | None = None) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @staticmethod
    def answer(user: str) -> str:
        if "GARBLE" in user:  # a judge reply with no verdict line in it
            return "I would rather not pick one of these."
        if "[Response A]" in user:
            a = user.split("[Response A]", 1)[1].split("[Response B]", 1)[0]
            b = user.split("[Response B]", 1)[1]
            winner = "B" if "GOOD" in b and "GOOD" not in a else "A"
            return f"Both were read carefully.\nWinner: {winner}"
        response = user.split("[Response]", 1)[1]
        return "Solid answer.\nRating: 9" if "GOOD" in response else "Weak answer.\nRating: 2"

    def __enter__(self) -> ChatServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
