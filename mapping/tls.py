"""The one TLS context for talking to an ISP: verified, plus the administrator's CA file."""

from __future__ import annotations

import os
import ssl
from functools import lru_cache

from django.conf import settings


def isp_ssl_context() -> ssl.SSLContext:
    """A verifying context: the system store plus settings.ISP_CA_FILE, if configured."""
    ca_file = settings.ISP_CA_FILE or None
    # The file's mtime is part of the key: an updated CA file is read again, no restart needed.
    return _context(ca_file, os.stat(ca_file).st_mtime_ns if ca_file else 0)


@lru_cache(maxsize=4)
def _context(ca_file: str | None, _mtime: int) -> ssl.SSLContext:
    # Cached: loading the system store costs ~30 ms, and a context is safe to share between
    # connections. Never an unverified context (design.md, "TLS is unverified unless you ask").
    context = ssl.create_default_context()
    if ca_file:
        # load_verify_locations adds to the store; create_default_context(cafile=...) would
        # replace the system store instead.
        context.load_verify_locations(cafile=ca_file)
    return context
