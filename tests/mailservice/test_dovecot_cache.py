"""Flushing Dovecot's auth cache: doveadm HTTP API, local doveadm, or nothing (logged)."""

from __future__ import annotations

import base64
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from mailservice.dovecot_cache import auth_cache_flush


@pytest.fixture
def doveadm_http():
    seen = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append((self.path, self.headers["Authorization"], body))
            reply = json.dumps([["doveadmResponse", [], "aamail"]]).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", seen
    server.shutdown()
    server.server_close()


def test_it_flushes_through_the_doveadm_http_api(settings, doveadm_http):
    url, seen = doveadm_http
    settings.DOVEADM_HTTP_URL = url
    settings.DOVEADM_API_KEY = "k3y"
    assert auth_cache_flush(username="support@example.com") is True
    [(path, authorization, body)] = seen
    assert path == "/doveadm/v1"
    assert authorization == "X-Dovecot-API " + base64.b64encode(b"k3y").decode()
    assert body == [["authCacheFlush", {"user": ["support@example.com"]}, "aamail"]]


def test_it_logs_and_carries_on_when_dovecot_does_not_answer(settings, caplog):
    settings.DOVEADM_HTTP_URL = "http://127.0.0.1:9"  # discard port: nothing listens
    assert auth_cache_flush(username="support@example.com") is False
    assert "not flushed for support@example.com" in caplog.text


def test_it_logs_that_there_is_no_dovecot_to_tell(settings, caplog):
    caplog.set_level(logging.INFO, logger="mailservice")
    assert auth_cache_flush(username="support@example.com") is False
    assert "No Dovecot configured" in caplog.text
