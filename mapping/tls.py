"""The one TLS context for talking to an ISP: verified, plus the administrator's CA file."""

from __future__ import annotations

import ssl

from django.conf import settings


def isp_ssl_context() -> ssl.SSLContext:
    """A verifying context: the system store plus settings.ISP_CA_FILE, if configured."""
    # Never an unverified context (design.md, "TLS is unverified unless you ask").
    context = ssl.create_default_context()
    if settings.ISP_CA_FILE:
        # load_verify_locations adds to the store; create_default_context(cafile=...) would
        # replace the system store instead.
        context.load_verify_locations(cafile=settings.ISP_CA_FILE)
    return context
