"""Outgoing mail made visible: what Postfix holds back or returns, per sender's relay (issue 12).

When the ISP refuses an employee's relay login, Postfix keeps the mail in its queue and
retries it for up to five days, telling nobody. The relay watch reads, on a schedule, the two
things Postfix itself offers about mail it could not hand over, ties each message to the
sender's account and to the binding that is its relay, and writes one RelayStatus row per
such binding:

- **The queue** (`postqueue -c <config> -j`: one JSON object per message, with the sender
  and, for each recipient still to do, the reason, e.g. "SASL authentication failed; server
  isp[192.0.2.7] said: 535 5.7.8 ..."). An employee's message to an outside address that
  waits there was not taken by the ISP: that relay is failing, for as long as mail waits.
- **The postmaster's copies of bounces** (main.cf `notify_classes = bounce`,
  `bounce_notice_recipient`): Postfix delivers them into MAIL_ROOT/.relay-notices/ as
  delivery status notifications (RFC 3464, with `X-Postfix-Sender`); each message returned to
  an employee from an outside recipient is counted on that employee's relay.

Why these and not Postfix's log: `postqueue` reaches the queue wherever the Postfix spool and
configuration are mounted — on the box of `manage.py mailserver`, and in the compose
deployment from the `relaywatch` service that mounts the `postfixspool` volume — while the log
of a Postfix in a container goes to its stdout, out of reach. A message to a colleague (LMTP)
that waits or bounces is the office's own affair, not the relay's, and is not counted.

`relay_watch_once()` is one pass; `manage.py relaywatch` runs it every RELAY_WATCH_SECONDS,
and `manage.py mailserver` runs it in a thread.
"""

from __future__ import annotations

import email
import email.policy
import json
import logging
import os
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from django.db import close_old_connections, connection, transaction
from django.db.models import Case, IntegerField, Q, Value, When
from django.utils import timezone

from accounts.models import Account
from mapping.models import Binding

from . import layout, lookups
from .models import RelayState, RelayStatus

log = logging.getLogger("mailservice.relaywatch")

# A notice claimed by a pass that then died is taken up again after this long.
_CLAIM_STALE_SECONDS = 300


class RelayWatchError(Exception):
    """The queue could not be read; ``message`` says why in words."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# --- what Postfix says ---------------------------------------------------------------------


@dataclass(frozen=True)
class Waiting:
    """One recipient of a queued message that the next hop did not take yet."""

    queue_id: str
    sender: str
    recipient: str
    reason: str
    arrived: datetime


def queue_read(postfix_dir: str | Path, *, timeout: float = 60.0) -> list[Waiting]:
    """Every recipient waiting in Postfix's queue with a reason (`postqueue -j`)."""
    try:
        result = subprocess.run(
            ["postqueue", "-c", str(postfix_dir), "-j"],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except FileNotFoundError:
        raise RelayWatchError(
            "postqueue is not installed here: run the relay watch where Postfix's queue is "
            "(the relaywatch service, or the box that runs `manage.py mailserver`)."
        ) from None
    except subprocess.TimeoutExpired:
        raise RelayWatchError(f"postqueue did not answer within {timeout:.0f} s.") from None
    if result.returncode != 0:
        why = " ".join(result.stderr.split())[:300] or f"exit status {result.returncode}"
        raise RelayWatchError(f"postqueue -c {postfix_dir} -j failed: {why}")
    return queue_parse(result.stdout)


def queue_parse(text: str) -> list[Waiting]:
    """`postqueue -j` output (one JSON object per line) → the recipients waiting with a reason.

    A recipient without a reason has not been tried yet (a message just arrived): not a
    failure. Bounces the office itself sends (empty sender) are nobody's relay.
    """
    waiting = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError:
            log.warning("relay watch: a line of postqueue -j is not JSON; skipped")
            continue
        sender = str(item.get("sender") or "")
        if not sender or sender.upper().startswith("MAILER-DAEMON"):
            continue
        arrived = datetime.fromtimestamp(int(item.get("arrival_time") or 0), tz=UTC)
        for recipient in item.get("recipients") or []:
            reason = str(recipient.get("delay_reason") or "")
            if reason:
                queue_id = str(item.get("queue_id", ""))
                waiting.append(Waiting(queue_id, sender, recipient["address"], reason, arrived))
    return waiting


@dataclass(frozen=True)
class Returned:
    """A message Postfix returned to its sender: the postmaster's copy of the bounce."""

    queue_id: str
    sender: str
    recipients: tuple[str, ...]
    reason: str


def _rfc822_value(value: object) -> str:
    # "rfc822; support@example.com" -> "support@example.com"
    text = " ".join(str(value or "").split())
    return text.partition(";")[2].strip() if ";" in text else text


def notice_parse(data: bytes) -> Returned | None:
    """A postmaster bounce copy → what was returned to whom; None for any other notice."""
    message = email.message_from_bytes(data, policy=email.policy.default)
    for part in message.walk():
        if part.get_content_type() != "message/delivery-status":
            continue
        blocks = part.get_payload()
        if not isinstance(blocks, list) or not blocks:
            return None
        envelope, per_recipient = blocks[0], blocks[1:]
        sender = _rfc822_value(envelope.get("X-Postfix-Sender"))
        failed = [b for b in per_recipient if str(b.get("Action", "")).strip() == "failed"]
        if not sender or not failed:
            return None
        reason = " ".join(str(failed[-1].get("Diagnostic-Code") or "").split())
        return Returned(
            queue_id=str(envelope.get("X-Postfix-Queue-ID") or "").strip(),
            sender=sender,
            recipients=tuple(_rfc822_value(b.get("Final-Recipient")) for b in failed),
            reason=_rfc822_value(reason) if reason.lower().startswith("smtp;") else reason,
        )
    return None


def notices_claim(maildir: Path) -> Iterator[Path]:
    """Take each new notice out of the Maildir (a rename: one pass gets each file)."""
    if not maildir.is_dir():
        return  # no bounce yet: Postfix (virtual(8), as the mail user) creates it
    claimed = maildir / "claimed"
    claimed.mkdir(exist_ok=True)
    stale = time.time() - _CLAIM_STALE_SECONDS
    for path in sorted(claimed.iterdir()):
        if path.stat().st_mtime < stale:  # a pass died holding it
            yield path
    for sub in ("new", "cur"):
        folder = maildir / sub
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            target = claimed / f"{path.name}.{os.getpid()}"
            try:
                path.rename(target)
            except FileNotFoundError:
                continue  # another pass took it
            os.utime(target)
            yield target


# --- words for an administrator ------------------------------------------------------------


@dataclass(frozen=True)
class Relay:
    """What the words name: the ISP login and the server of a binding's relay."""

    login: str
    host: str
    port: int

    @classmethod
    def of(cls, binding: Binding) -> Relay:
        # Same rules as the lookups' RelayRow: the SMTP login/host, else the POP3 ones.
        host = binding.smtp_host or binding.account.domain.smtp_host or binding.host
        return cls(binding.smtp_username or binding.username, host, binding.smtp_port)


_SAID = re.compile(r"said:\s*(.*)$", re.S)


def _reply(reason: str) -> str:
    match = _SAID.search(reason)
    text = match.group(1) if match else reason
    return re.sub(r"\s*\(in reply to .*?\)\s*$", "", " ".join(text.split()))[:240]


def waiting_words(reason: str, relay: Relay, waiting: int) -> str:
    """Why mail waits, and what to do, from the reason Postfix gives for a deferral."""
    text = " ".join(reason.split())
    text = re.sub(r"^delivery temporarily suspended:\s*", "", text, flags=re.I)
    server = f"{relay.host}:{relay.port}"
    low = text.lower()
    if "sasl authentication failed" in low:
        what = (
            f"The ISP refused the relay login of {relay.login} ({_reply(text)}); mail to the "
            f"outside waits in the queue. Correct the ISP password (or SMTP password) of the "
            f"remote POP3 account marked Outgoing relay"
        )
    elif "connection refused" in low:
        what = (
            f"The ISP's SMTP server {server} refused the connection; mail to the outside waits "
            f"in the queue. Check the SMTP server and port of the Outgoing relay"
        )
    elif "timed out" in low:
        what = (
            f"The ISP's SMTP server {server} did not answer ({_reply(text)}); mail to the "
            f"outside waits in the queue and is retried"
        )
    elif "host or domain name not found" in low or "name service error" in low:
        what = (
            f"The name of the ISP's SMTP server {relay.host} does not resolve; mail to the "
            f"outside waits in the queue. Check the SMTP server of the Outgoing relay"
        )
    elif "certificate" in low or "tls" in low:
        what = (
            f"The TLS check of the ISP's SMTP server {server} failed ({_reply(text)}); mail "
            f"to the outside waits in the queue. Check the SMTP security setting, or the CA "
            f"the box trusts for the ISP (MAIL_RELAY_CA_FILE)"
        )
    elif "lookup failure" in low or "resolver failure" in low:
        what = (
            "The office's lookup server (mailmap) did not answer Postfix; mail to the outside "
            "waits in the queue. Check that the mailmap service runs"
        )
    else:
        what = (
            f"The ISP's SMTP server {server} did not take the mail ({_reply(text)}); it waits "
            f"in the queue and is retried"
        )
    count = f"{waiting} message{'s' if waiting != 1 else ''} wait{'s' if waiting == 1 else ''}"
    return f"{what}. {count}."


def returned_words(returned: Returned, relay: Relay) -> str:
    """What the last bounce said: the recipient and the ISP's words."""
    who = ", ".join(returned.recipients)
    return (
        f"The last message returned to the sender was for {who}: {_reply(returned.reason)}"
        f" (through the relay login {relay.login})."
    )


# --- one pass ------------------------------------------------------------------------------


@dataclass
class _Seen:
    waiting: list[Waiting] = field(default_factory=list)
    returned: list[Returned] = field(default_factory=list)


@dataclass
class PassSummary:
    """What one pass saw: messages waiting and returned that belong to a relay."""

    waiting: int = 0
    returned: int = 0
    failing: int = 0
    notices: int = 0


class _Senders:
    """Sender address → the binding that is its account's relay (cached for one pass)."""

    def __init__(self) -> None:
        self._relay: dict[str, Binding | None] = {}
        self._hosted: dict[str, bool] = {}
        self._here: dict[str, bool] = {}

    def relay(self, sender: str) -> Binding | None:
        key = sender.strip().lower()
        if key not in self._relay:
            self._relay[key] = self._find(key)
        return self._relay[key]

    def outside(self, recipient: str) -> bool:
        key = recipient.strip().lower()
        domain = lookups.hosted_domain(key)
        # One query per recipient domain when it is not hosted here (most outside mail).
        if domain not in self._hosted:
            self._hosted[domain] = lookups.domain_type(domain) is not None
        if not self._hosted[domain]:
            return True
        if key not in self._here:
            self._here[key] = lookups.delivered_here(key)
        return not self._here[key]

    @staticmethod
    def _find(sender: str) -> Binding | None:
        keys = lookups.mailbox_keys(sender)
        if keys is None:
            return None
        domain, localpart, base = keys
        exact_first = Case(
            When(localpart=localpart, then=Value(0)), default=1, output_field=IntegerField()
        )
        account = (
            Account.objects.select_related("domain")
            .filter(domain__name=domain, localpart__in={localpart, base})
            .order_by(exact_first)
            .first()
        )
        return lookups.account_relay_binding(account=account) if account else None


def relay_watch_once(
    *, postfix_dir: str | Path, mail_root: str | Path, now: datetime | None = None
) -> PassSummary:
    """Read the queue and the bounce notices once; bring every RelayStatus up to date."""
    now = now or timezone.now()
    waiting = queue_read(postfix_dir)
    senders = _Senders()
    seen: dict[int, _Seen] = {}
    bindings: dict[int, Binding] = {}

    def note(sender: str, recipients: list[str]) -> Binding | None:
        if not any(senders.outside(r) for r in recipients):
            return None
        binding = senders.relay(sender)
        if binding is not None:
            bindings[binding.pk] = binding
            seen.setdefault(binding.pk, _Seen())
        return binding

    for item in waiting:
        binding = note(item.sender, [item.recipient])
        if binding is not None:
            seen[binding.pk].waiting.append(item)
    notices = list(notices_claim(layout.relay_notices_maildir(mail_root)))
    for returned in _notices_read(notices):
        binding = note(returned.sender, list(returned.recipients))
        if binding is not None:
            seen[binding.pk].returned.append(returned)
    with transaction.atomic():
        summary = _store(seen, bindings, now)
        RelayStatus.objects.update(checked_at=now)
    # Only once the counts are committed: a pass that dies before takes them up again.
    for path in notices:
        path.unlink(missing_ok=True)
    summary.notices = len(notices)
    return summary


def _notices_read(notices: list[Path]) -> Iterator[Returned]:
    """The returned messages the bounce notices tell of; an unreadable notice is dropped."""
    for path in notices:
        try:
            returned = notice_parse(path.read_bytes())
        except (OSError, ValueError, LookupError):
            log.warning("relay watch: notice %s could not be read; dropped", path.name)
            continue
        if returned is not None:
            yield returned


def _store(seen: dict[int, _Seen], bindings: dict[int, Binding], now: datetime) -> PassSummary:
    summary = PassSummary()
    rows = {
        row.binding_id: row
        for row in RelayStatus.objects.select_for_update().filter(
            Q(binding_id__in=list(seen)) | Q(state=RelayState.FAILING) | Q(deferred__gt=0)
        )
    }
    missing = [pk for pk in rows if pk not in bindings]
    for binding in Binding.objects.select_related("account__domain").filter(pk__in=missing):
        bindings[binding.pk] = binding
    for pk in set(rows) | set(seen):
        row = rows.get(pk) or RelayStatus(binding_id=pk)
        got = seen.get(pk, _Seen())
        relay = Relay.of(bindings[pk])
        messages = {item.queue_id for item in got.waiting}
        row.deferred = len(messages)
        row.bounced += len(got.returned)
        if got.waiting:
            latest = max(got.waiting, key=lambda item: item.arrived)
            if row.state != RelayState.FAILING:
                row.state = RelayState.FAILING
                row.failing_since = min(item.arrived for item in got.waiting)
            row.last_error = waiting_words(latest.reason, relay, row.deferred)
            summary.failing += 1
        else:
            if row.state == RelayState.FAILING:
                row.last_error = ""
            row.state, row.failing_since = RelayState.OK, None
            if got.returned:
                row.last_error = returned_words(got.returned[-1], relay)
        row.checked_at = now
        row.save()
        summary.waiting += row.deferred
        summary.returned += len(got.returned)
    return summary


class RelayWatchThread(threading.Thread):
    """`relay_watch_once` every `interval` seconds until stopped (`manage.py mailserver`)."""

    def __init__(self, *, postfix_dir: str | Path, mail_root: str | Path, interval: float) -> None:
        super().__init__(name="relay-watch", daemon=True)
        self.postfix_dir, self.mail_root, self.interval = postfix_dir, mail_root, interval
        # Not `_stop`: threading.Thread has a method of that name, which join() calls.
        self._halt = threading.Event()

    def run(self) -> None:
        try:
            while not self._halt.wait(self.interval):
                close_old_connections()
                relay_watch_pass_logged(postfix_dir=self.postfix_dir, mail_root=self.mail_root)
        finally:
            connection.close()

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=30)


def relay_watch_pass_logged(*, postfix_dir: str | Path, mail_root: str | Path) -> bool:
    """One pass whose failure is logged in words, not raised (the loops go on)."""
    try:
        summary = relay_watch_once(postfix_dir=postfix_dir, mail_root=mail_root)
    except RelayWatchError as exc:
        log.error("relay watch: %s", exc.message)
        return False
    except Exception as exc:  # the next pass tries again; a database hiccup must not end it
        log.error("relay watch: the pass failed (%s); trying again later", type(exc).__name__)
        connection.close()
        return False
    if summary.failing or summary.returned:
        log.info(
            "relay watch: %d relays failing, %d messages waiting, %d returned",
            summary.failing,
            summary.waiting,
            summary.returned,
        )
    return True
