"""A stand-in for the product's lookup server answering the submitter's ``oauth_token`` map.

    with TokenMap() as tokens:
        tokens.answers["alice@contoso.test"] = "OK alice@contoso.test:<token>"
        submit.py --map inet:127.0.0.1:<tokens.port> ...
        tokens.requests   # what was asked, in order

A real socketmap(5) server (netstrings) in a thread on a free loopback port: stage 1 has no
credential model, so the test decides the answer; the product's mailmap takes over in stage 2.
Unknown keys answer ``NOTFOUND ``.
"""

from __future__ import annotations

import socketserver
import threading

from devserver.processes import free_port


class _Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        while True:
            digits = b""
            while (c := self.rfile.read(1)) not in (b":", b""):
                digits += c
            if not digits.isdigit():
                return
            request = self.rfile.read(int(digits)).decode()
            if self.rfile.read(1) != b",":
                return
            name, _, key = request.partition(" ")
            self.server.owner.requests.append((name, key))
            answer = self.server.owner.answers.get(key, "NOTFOUND ").encode()
            self.wfile.write(b"%d:%s," % (len(answer), answer))
            self.wfile.flush()


class _Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True


class TokenMap:
    """The socketmap server; ``answers`` maps a sender to its raw socketmap answer."""

    def __init__(self) -> None:
        self.port = free_port()
        self.answers: dict[str, str] = {}
        self.requests: list[tuple[str, str]] = []
        self._server = _Server(("127.0.0.1", self.port), _Handler)
        self._server.owner = self
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def where(self) -> str:
        return f"inet:127.0.0.1:{self.port}"

    def __enter__(self) -> TokenMap:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
