"""Flush Dovecot's auth cache for one user, so a new local password counts at once.

Dovecot caches successful logins (auth_cache_ttl) because an Argon2 check is expensive;
until flushed, the old password keeps working. Two ways to reach Dovecot:

- DOVEADM_HTTP_URL (+ DOVEADM_API_KEY): doveadm's HTTP API, for Dovecot in another
  container (docker-compose);
- the dovecot.conf of this machine (MAIL_DOVECOT_CONFIG, else the one `mailconfig` or
  `mailserver` wrote into MAIL_CONFIG_DIR): `doveadm -c <dovecot.conf> auth cache flush`.

With neither, there is no Dovecot to tell: a log line says so and nothing else happens.
Failures are logged, never raised: the password is already saved, and the cache entry
expires by itself after auth_cache_ttl.
"""

from __future__ import annotations

import base64
import json
import logging
import subprocess
import urllib.request

from django.conf import settings

from . import layout

log = logging.getLogger(__name__)


def auth_cache_flush(*, username: str) -> bool:
    """Ask Dovecot to forget `username`'s cached login; True when it confirmed."""
    url = getattr(settings, "DOVEADM_HTTP_URL", "")
    conf = layout.installed_dovecot_conf()
    try:
        if url:
            return _flush_http(url, getattr(settings, "DOVEADM_API_KEY", ""), username)
        if conf:
            return _flush_doveadm(conf, username)
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        log.warning("Dovecot auth cache not flushed for %s: %s", username, exc)
        return False
    log.info(
        "No Dovecot configured (MAIL_DOVECOT_CONFIG, DOVEADM_HTTP_URL): "
        "no auth cache to flush for %s",
        username,
    )
    return False


def _flush_doveadm(conf: str, username: str) -> bool:
    result = subprocess.run(
        # "--": a local part may start with "-" (RFC 5321), which doveadm would read as an option.
        ["doveadm", "-c", conf, "auth", "cache", "flush", "--", username],
        capture_output=True,
        text=True,
        timeout=10,
    )
    if result.returncode != 0:
        log.warning("Dovecot auth cache not flushed for %s: %s", username, result.stderr.strip())
        return False
    return True


def _flush_http(url: str, api_key: str, username: str) -> bool:
    body = json.dumps([["authCacheFlush", {"user": [username]}, "aamail"]]).encode()
    request = urllib.request.Request(  # noqa: S310 - operator-configured http(s) URL
        url.rstrip("/") + "/doveadm/v1",
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "Authorization": "X-Dovecot-API " + base64.b64encode(api_key.encode()).decode(),
        },
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        reply = json.loads(response.read())
    if reply and reply[0][0] == "error":
        log.warning("Dovecot auth cache not flushed for %s: %s", username, reply[0][1])
        return False
    return True
