"""Detect: ordered live checks of an ISP's POP3 and SMTP settings -> a list of step results.

``detect(pop3=Target(...), smtp=Target(...))`` tries the settings the way the fetcher and the
relay will use them and returns a ``Report``: one ``Step`` per check, in order, each with a
sentence an administrator can act on. It writes nothing (no database, no files). SMTP is
tested only when given: the views pass it when the binding carries the account's outgoing
mail, or when the administrator asks.

Bounds: one overall deadline (settings.DETECT_DEADLINE_SECONDS); each network wait gets at
most half of it, and a watchdog shuts the sockets down if the deadline passes anyway.
Safety: every connection goes through ``mapping.outbound`` (resolve once, vet, connect to
the vetted address); TLS is always verified (``tls.isp_ssl_context``: system store plus
settings.ISP_CA_FILE); STARTTLS, when chosen, is required (fetchmail CVE-2021-39272);
passwords never appear in a step's text.

Where things are: ``run.py`` the report types, the deadline and the steps both protocols
share; ``pop3.py`` and ``smtp.py`` the steps of each protocol; ``certificates.py`` the words
for certificates and handshakes.
"""

from __future__ import annotations

import time

from django.conf import settings

from .. import outbound
from .pop3 import pop3_plan, pop3_steps
from .run import (
    FAIL,
    OK,
    SECURITY_LABELS,
    SKIP,
    WARN,
    Deadline,
    OAuthLogin,
    Report,
    Run,
    Section,
    Step,
    Target,
)
from .smtp import smtp_plan, smtp_steps

__all__ = [
    "FAIL",
    "OK",
    "SECURITY_LABELS",
    "SKIP",
    "WARN",
    "OAuthLogin",
    "Report",
    "Section",
    "Step",
    "Target",
    "detect",
]


def detect(
    *,
    pop3: Target | None = None,
    smtp: Target | None = None,
    deadline: float | None = None,
    policy: outbound.Policy | None = None,
) -> Report:
    """Run the checks for the given targets under one deadline; never raises for the network."""
    seconds = float(deadline if deadline is not None else settings.DETECT_DEADLINE_SECONDS)
    run = Run(Deadline(seconds), policy or outbound.Policy.from_settings(), pop3, smtp)
    started = time.monotonic()
    try:
        sections = []
        if pop3 is not None:
            sections.append(run.section("POP3", pop3, pop3_steps, pop3_plan(pop3)))
        if smtp is not None:
            sections.append(run.section("SMTP", smtp, smtp_steps, smtp_plan(smtp)))
    finally:
        run.deadline.close()
    return Report(sections, time.monotonic() - started, seconds)
