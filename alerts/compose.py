"""What an alert says: one event per binding, the e-mail's words and the webhook's JSON.

Times are written in the box's TIME_ZONE with the zone named, like everywhere in the console;
the JSON carries ISO 8601 times with their offset.
"""

from __future__ import annotations

import json
from datetime import datetime

from django.conf import settings
from django.urls import reverse
from django.utils import formats, timezone

from mapping.models import Binding

from .models import Alert, AlertKind, AlertType

FAILING, RECOVERED, STILL_FAILING = "failing", "recovered", "still failing"


def event(
    binding: Binding, kind: str, state: str, *, since: datetime | None, label: str, error: str
) -> dict:
    """One line of an alert: which binding, fetching or relay, its state, since when, why."""
    if kind == AlertKind.RELAY:
        login = binding.smtp_username or binding.username
        server = f"{binding.smtp_host or binding.host}:{binding.smtp_port}"
    else:
        login, server = binding.username, f"{binding.host}:{binding.port}"
    return {
        "binding_id": binding.pk,
        "account_id": binding.account_id,
        "account": binding.account.address,
        "kind": kind,
        "kind_label": AlertKind(kind).label,
        "isp_account": login,
        "server": server,
        "state": state,
        "state_label": label,
        "since": since.isoformat() if since else None,
        "error": error,
    }


def shown(value: str | None) -> str:
    """An ISO time of an event as the console shows it: "2026-11-25 14:03 CET"."""
    if not value:
        return ""
    moment = datetime.fromisoformat(value)
    return formats.date_format(timezone.localtime(moment), "DATETIME_FORMAT")


def _link(event_: dict) -> str:
    base = settings.CONSOLE_URL.rstrip("/")
    if not base:
        return ""
    return base + reverse("binding-list", args=[event_["account_id"]])


def subject(alert: Alert) -> str:
    """'[AAMail] example.com: 2 failing, 1 recovered' / '… daily digest: 3 still failing'."""
    counts: dict[str, int] = {}
    for item in alert.events:
        counts[item["state"]] = counts.get(item["state"], 0) + 1
    parts = [f"{n} {state}" for state, n in counts.items()]
    what = "daily digest: " if alert.type == AlertType.DIGEST else ""
    return f"[AAMail] {alert.domain.name}: {what}{', '.join(parts)}"


def body(alert: Alert) -> str:
    """The e-mail's plain text: every event in words, with a link to fix it when known."""
    lines = [
        f"AAMail at {settings.MAIL_HOSTNAME}, domain {alert.domain.name}, "
        f"{formats.date_format(timezone.localtime(alert.created_at), 'DATETIME_FORMAT')}.",
        "",
    ]
    headings = {
        FAILING: "Failing:",
        RECOVERED: "Working again:",
        STILL_FAILING: "Still failing (daily digest):",
    }
    for state, heading in headings.items():
        items = [item for item in alert.events if item["state"] == state]
        if not items:
            continue
        lines.append(heading)
        for item in items:
            since = f" since {shown(item['since'])}" if item["since"] else ""
            lines.append(
                f"- {item['account']}: {item['kind_label'].lower()} {item['isp_account']} on "
                f"{item['server']} — {item['state_label']}{since}"
            )
            if item["error"] and state != RECOVERED:
                lines.append(f"  {item['error']}")
            if _link(item):
                lines.append(f"  Open: {_link(item)}")
        lines.append("")
    lines.append(
        "You are told once when something starts failing and once when it works again; "
        "what stays broken is listed again in a daily digest."
    )
    return "\n".join(lines) + "\n"


def webhook_json(alert: Alert) -> bytes:
    """The webhook's body: the exact bytes that are signed and sent."""
    payload = {
        "type": "aamail.alert",
        "alert_id": alert.pk,
        "alert_type": alert.type,
        "domain": alert.domain.name,
        "created_at": alert.created_at.isoformat(),
        "events": alert.events,
    }
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
