"""A fetch worker for the refresh race: its own process, the project's settings from the env.

    python -m tests.oauth.race_child setup ADDRESS POP3S_PORT   -> {"id": <binding id>}
    python -m tests.oauth.race_child fetch BINDING_ID GO_FILE   -> {"fresh": …, "stat": […]}

``setup`` creates a Microsoft binding of ADDRESS at the OAuth-only ISP and signs it in at the
test authorization server (settings from the environment), its access token already
expired. ``fetch`` waits until GO_FILE exists (so that both workers start together), asks
the token service for a token and logs in to the ISP with it (``credentials.pop3_login``,
what a fetch does), then STAT. One JSON line on stdout either way.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aamail.settings")
    import django

    django.setup()
    from datetime import timedelta

    from django.utils import timezone

    from mapping import credentials
    from mapping.models import Binding, OAuthCredential
    from mapping.oauth import grants
    from mapping.oauth.tokens import OAuthError
    from mapping.pop3 import Client, Pop3Error, Security
    from mapping.tls import isp_ssl_context

    if argv[0] == "setup":
        from tests.factories import BindingFactory
        from tests.oauth.conftest import sign_in_binding
        from tests.servers.oauth_authserver import OAuthAuthServer

        class Browser:  # the administrator's browser: follows the authorization URL once
            ssl_context = staticmethod(isp_ssl_context)
            redirect_of = OAuthAuthServer.redirect_of

        binding = BindingFactory(
            host="localhost",
            port=int(argv[2]),
            security="ssl",
            username=argv[1],
            auth_method="oauth2_microsoft",
        )
        cred = sign_in_binding(Browser(), binding)
        OAuthCredential.objects.filter(pk=cred.pk).update(
            access_expires_at=timezone.now() - timedelta(seconds=1)
        )
        print(json.dumps({"id": binding.pk}), flush=True)
        return 0

    binding = Binding.objects.get(pk=int(argv[1]))
    go = Path(argv[2])
    while not go.exists():
        time.sleep(0.002)
    started = time.monotonic()
    try:
        token = grants.access_token(binding=binding)
        sock = socket.create_connection(("127.0.0.1", binding.port), timeout=10)
        with Client(
            binding.host, binding.port, Security.SSL, ssl_context=isp_ssl_context(), timeout=10
        ) as client:
            client.connect(sock=sock)
            credentials.pop3_login(binding, client)
            stat = client.stat()
            client.quit()
    except (OAuthError, Pop3Error) as exc:
        print(json.dumps({"error": type(exc).__name__, "message": exc.message}), flush=True)
        return 1
    took = time.monotonic() - started
    out = {"fresh": token.fresh, "version": token.version, "stat": stat, "seconds": took}
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
