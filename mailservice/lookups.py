"""What Postfix asks the product, answered from the database (the socketmap's maps).

| map                | Postfix parameter                            | key         |
|--------------------|----------------------------------------------|-------------|
| domains            | virtual_mailbox_domains (Standard mode only) | domain      |
| mailboxes          | virtual_mailbox_maps                         | recipient   |
| transport          | transport_maps (office mailbox -> LMTP)      | recipient   |
| recipient          | virtual_alias_maps (``a+ext@d`` → ``a@d``)   | recipient   |
| sender_login       | smtpd_sender_login_maps                      | MAIL FROM   |
| outside_sender     | check_sender_access on port 25               | MAIL FROM   |
| sasl_class         | check_sasl_access (restriction class)        | SASL login  |
| internal_only      | check_recipient_access, special local staff  | recipient   |
| no_relay           | check_recipient_access, sender without relay | recipient   |
| relay_transport    | sender_dependent_default_transport_maps      | MAIL FROM   |
| relay_credentials  | smtp_sasl_password_maps                      | MAIL FROM   |
| oauth_token        | the isp_oauth pipe's submitter (own socket)  | MAIL FROM   |

Who receives what: an address with an office account is delivered here (Dovecot LMTP). Any
other address of a Standard-mode domain does not exist (550). A Map or Share mode domain is
hosted at the ISP, and the office knows only some of its mailboxes: any other address there
is a colleague at the ISP, reached like an outside address, through the sender's own relay
(issue 10, item 4).

Every answer is computed from the current rows, so a change of an account's kind, a domain's
type or a binding takes effect on the next lookup. The maps read those rows through a *source*:
the database itself (one query per lookup, `DATABASE`), or an in-memory copy of the same rows
that the lookup server keeps only while it knows the copy is current (snapshot.py). Any error
answers TEMP (the mail waits in a queue); NOTFOUND means "really not here". The ISP password is
decrypted only here, just before it is handed to Postfix, and never logged.

Senders whose relay binding signs in with Microsoft / Google (issue 15) relay through the
``isp_oauth`` pipe transports instead of Postfix's SMTP client (which has no XOAUTH2 on
Debian 12, shared/oauth2.md §4 snag 6): ``relay_transport`` names them, ``relay_credentials``
has nothing for them, and ``oauth_token`` hands the pipe's submitter a fresh access token
(the token service refreshes it when needed). That map is never answered from a snapshot
nor on Postfix's socket: only on its own socket, to the pipe's user (``TOKEN_MAPS``).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from django.conf import settings
from django.db import connection

from accounts.models import Account, AccountKind
from domains.models import DomainType, Security
from mapping import crypto, outbound
from mapping.models import AuthMethod, Binding
from mapping.oauth import grants
from mapping.oauth.tokens import OAuthError

from . import layout
from .socketmap import NOTFOUND, Reply, Request, ok, perm, temp

log = logging.getLogger(__name__)

INTERNAL_ONLY = "internal_only"
NO_RELAY = "no_relay"
STAFF_REFUSAL = (
    "REJECT 5.7.1 Special local staff accounts may only send to internal addresses of this office"
)
NO_RELAY_REFUSAL = (
    "REJECT 5.7.1 Your account has no outgoing ISP relay (a remote POP3 account marked "
    "Outgoing relay), so it can only send to internal addresses of this office; ask your "
    "administrator"
)
FORGED_SENDER_REFUSAL = (
    "REJECT 5.7.1 This office's own addresses send only through the submission port with "
    "a login (port 587 or 465); mail from outside may not use them"
)
TRANSPORTS = {
    Security.STARTTLS: "isp_starttls",
    Security.SSL: "isp_smtps",
    Security.NONE: "isp_plain",
}
# Issue 15: pipe(8) transports that submit with AUTH XOAUTH2 (master.cf); no plain variant.
OAUTH_TRANSPORTS = {Security.STARTTLS: "isp_oauth", Security.SSL: "isp_oauth_smtps"}
# A next-hop host goes into a transport(5) value: letters, digits, dots and hyphens only.
_HOSTNAME = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$")


def _split(address: str) -> tuple[str, str] | None:
    localpart, sep, domain = address.strip().lower().rpartition("@")
    if not sep or not localpart or not domain or localpart.startswith('"'):
        return None
    return localpart, domain


@dataclass(frozen=True)
class Mailbox:
    """An active account as the lookups see it, with its relay binding's fields if any."""

    address: str
    localpart: str
    domain: str
    kind: str
    relay: RelayRow | None
    domain_type: str = DomainType.MAP


@dataclass(frozen=True)
class RelayRow:
    smtp_host: str
    domain_smtp_host: str
    pop3_host: str
    smtp_port: int
    smtp_security: str
    smtp_username: str
    username: str
    smtp_password_encrypted: str
    password_encrypted: str
    auth_method: str = AuthMethod.PASSWORD

    @property
    def signs_in(self) -> bool:
        """The binding signs in with OAuth (issue 15): it relays through isp_oauth."""
        return self.auth_method != AuthMethod.PASSWORD

    @property
    def host(self) -> str:
        # Binding.clean stores the SMTP host; rows saved before it did fall back like this.
        return self.smtp_host or self.domain_smtp_host or self.pop3_host

    def credentials(self) -> tuple[str, str]:
        # Same rule as Binding.smtp_credentials(), decrypted only now.
        login = self.smtp_username or self.username
        if self.smtp_password_encrypted:
            return login, crypto.decrypt(self.smtp_password_encrypted)
        return login, crypto.decrypt(self.password_encrypted)


# One query per lookup, in SQL that SQLite and PostgreSQL read alike: the ORM's own cost
# (~1 ms per query here) would dominate the lookup budget (p99 <= 2 ms, issue 6). The exact
# local part wins over the one without "+extension" (an account name may contain "+"). The
# relay is the binding marked "Outgoing relay", whether or not its fetching is enabled: the
# relay is a choice of its own (issue 10, item 8); none marked means no relay.
_MAILBOX_COLUMNS = """
SELECT a.localpart, d.name, a.kind,
       b.smtp_host, d.smtp_host, b.host, b.smtp_port, b.smtp_security, b.smtp_username,
       b.username, b.smtp_password_encrypted, b.password_encrypted,
       d.domain_type, b.auth_method
FROM accounts_account a
JOIN domains_domain d ON d.id = a.domain_id
LEFT JOIN mapping_binding b ON b.id = (
    SELECT b2.id FROM mapping_binding b2
    WHERE b2.account_id = a.id AND b2.is_outgoing_relay
    ORDER BY b2.id
    LIMIT 1
)
WHERE a.is_active AND d.is_active"""
_MAILBOX_SQL = (
    _MAILBOX_COLUMNS
    + """ AND d.name = %s AND a.localpart IN (%s, %s)
ORDER BY CASE WHEN a.localpart = %s THEN 0 ELSE 1 END
LIMIT 1
"""
)
# Every active mailbox (the snapshot's copy): the same rows, the same relay rule.
ALL_MAILBOXES_SQL = _MAILBOX_COLUMNS
_DOMAIN_SQL = "SELECT domain_type FROM domains_domain WHERE name = %s AND is_active"
ALL_DOMAINS_SQL = "SELECT name, domain_type FROM domains_domain WHERE is_active"


def mailbox_keys(address: str) -> tuple[str, str, str] | None:
    """(domain, localpart, localpart without "+extension") of an address, lower-cased."""
    parts = _split(address)
    if parts is None:
        return None
    localpart, domain = parts
    base = localpart.split("+", 1)[0] if "+" in localpart else localpart
    return domain, localpart, base


def mailbox_from_row(row: Sequence[Any]) -> Mailbox:
    """A row of _MAILBOX_COLUMNS → Mailbox (no relay for special local staff)."""
    relay = None
    if row[5] is not None and row[2] != AccountKind.SPECIAL_LOCAL_STAFF:
        relay = RelayRow(*row[3:12], auth_method=row[13])
    return Mailbox(f"{row[0]}@{row[1]}", row[0], row[1], row[2], relay, row[12])


def mailbox_for_address(address: str) -> Mailbox | None:
    """The active account an address belongs to: exact, else without its ``+extension``."""
    keys = mailbox_keys(address)
    if keys is None:
        return None
    domain, localpart, base = keys
    with connection.cursor() as cursor:
        cursor.execute(_MAILBOX_SQL, [domain, localpart, base, localpart])
        row = cursor.fetchone()
    return mailbox_from_row(row) if row is not None else None


def hosted_domain(address_or_domain: str) -> str:
    return address_or_domain.strip().lower().rpartition("@")[2]


def domain_type(address_or_domain: str) -> str | None:
    """The type of the active hosted domain of an address (or domain), None if not hosted."""
    domain = hosted_domain(address_or_domain)
    if not domain:
        return None
    with connection.cursor() as cursor:
        cursor.execute(_DOMAIN_SQL, [domain])
        row = cursor.fetchone()
    return row[0] if row is not None else None


class Source(Protocol):
    """Where the maps read accounts and domains: the database, or a current snapshot of it."""

    def mailbox(self, address: str) -> Mailbox | None: ...

    def domain_type(self, address_or_domain: str) -> str | None: ...


class _Database:
    """The rows as they are now: one query per lookup, in the calling thread's connection."""

    def mailbox(self, address: str) -> Mailbox | None:
        return mailbox_for_address(address)

    def domain_type(self, address_or_domain: str) -> str | None:
        return domain_type(address_or_domain)


DATABASE: Source = _Database()


@dataclass(frozen=True)
class Context:
    """What a map reads: the rows (a Source) and where office mailboxes are delivered."""

    source: Source
    local_transport: str


def account_relay_binding(*, account: Account) -> Binding | None:
    """The binding whose SMTP server carries this account's outside mail, if any (ORM).

    The one marked "Outgoing relay", enabled for fetching or not; none for special local
    staff (their mail stays inside). Same rule as _MAILBOX_SQL.
    """
    if account.kind == AccountKind.SPECIAL_LOCAL_STAFF:
        return None
    return (
        Binding.objects.select_related("account__domain")
        .filter(account=account, is_outgoing_relay=True)
        .order_by("id")
        .first()
    )


def _smart_host(domain: str) -> str | None:
    return (settings.MAIL_SMART_HOSTS or {}).get(domain)


_VETTED: dict[tuple[str, int, object], tuple[float, str]] = {}
_VETTED_SECONDS = 60.0


def relay_refusal(host: str, port: int) -> str:
    """Why the outbound guard refuses this relay (words for a bounce), or "" when it may go.

    The relay route is an outbound connection like any other (issue 11): its host is
    resolved and every address vetted. Postfix looks the name up again when it connects, so
    the answer is kept only a minute. A name that does not resolve raises: TEMP, the mail
    waits.
    """
    policy = outbound.Policy.from_settings()
    key = (host.strip().lower(), int(port), policy)
    now = time.monotonic()
    held = _VETTED.get(key)
    if held is not None and now - held[0] < _VETTED_SECONDS:
        return held[1]
    try:
        outbound.resolve(host, int(port), policy=policy, timeout=5.0)
        why = ""
    except outbound.TargetRefusedError as exc:
        why = "".join(ch for ch in exc.message if ch.isprintable())[:300]
    _VETTED[key] = (now, why)
    return why


def _next_hop(host: str, port: int) -> str:
    host = host.strip().lower().rstrip(".")
    if not _HOSTNAME.match(host):
        raise ValueError(f"SMTP host {host!r} cannot be used as a Postfix next hop")
    return f"[{host}]:{int(port)}"


def _delivered_here(address: str, ctx: Context) -> bool:
    """Whether the office itself delivers mail for `address` (else it goes out via a relay).

    An office mailbox, or any address of a Standard-mode domain (an unknown one is refused
    there with 550). An unknown address of a Map or Share mode domain is the ISP's.
    """
    if ctx.source.mailbox(address) is not None:
        return True
    return ctx.source.domain_type(address) == DomainType.STANDARD


def delivered_here(address: str) -> bool:
    """Whether the office delivers mail for `address` itself (else it leaves by a relay)."""
    return _delivered_here(address, Context(DATABASE, ""))


# --- the maps ----------------------------------------------------------------------------


def domains(key: str, ctx: Context) -> Reply:
    # Only Standard-mode domains are final here: every address of them must be an account.
    domain = key.strip().lower()
    if domain and ctx.source.domain_type(domain) == DomainType.STANDARD:
        return ok(domain)
    return NOTFOUND


def mailboxes(key: str, ctx: Context) -> Reply:
    mailbox = ctx.source.mailbox(key)
    if mailbox is None:
        return NOTFOUND
    return ok(f"{mailbox.domain}/{mailbox.localpart}/")


def transport(key: str, ctx: Context) -> Reply:
    # Postfix also asks the domain, its parents and "*": only addresses have an answer.
    if "@" not in key:
        return NOTFOUND
    return ok(ctx.local_transport) if ctx.source.mailbox(key) is not None else NOTFOUND


def recipient(key: str, ctx: Context) -> Reply:
    # Asked for every recipient (cleanup, smtpd): only "+" addresses can need a rewrite.
    if "+" not in key.rpartition("@")[0]:
        return NOTFOUND
    mailbox = ctx.source.mailbox(key)
    if mailbox is None or mailbox.address == key.strip().lower():
        return NOTFOUND
    return ok(mailbox.address)


def sender_login(key: str, ctx: Context) -> Reply:
    mailbox = ctx.source.mailbox(key)
    return ok(mailbox.address) if mailbox is not None else NOTFOUND


def outside_sender(key: str, ctx: Context) -> Reply:
    # Port 25 has no login: a sender address in a hosted domain is forged there.
    if "@" in key and ctx.source.domain_type(key) is not None:
        return ok(FORGED_SENDER_REFUSAL)
    return NOTFOUND


def sasl_class(key: str, ctx: Context) -> Reply:
    mailbox = ctx.source.mailbox(key)
    if mailbox is None:
        return NOTFOUND
    if mailbox.kind == AccountKind.SPECIAL_LOCAL_STAFF:
        return ok(INTERNAL_ONLY)
    if mailbox.relay is None and not _smart_host(mailbox.domain):
        return ok(NO_RELAY)
    return NOTFOUND


def internal_only(key: str, ctx: Context) -> Reply:
    return ok("DUNNO") if _delivered_here(key, ctx) else ok(STAFF_REFUSAL)


def no_relay(key: str, ctx: Context) -> Reply:
    return ok("DUNNO") if _delivered_here(key, ctx) else ok(NO_RELAY_REFUSAL)


def relay_transport(key: str, ctx: Context) -> Reply:
    mailbox = ctx.source.mailbox(key)
    if mailbox is None or mailbox.kind == AccountKind.SPECIAL_LOCAL_STAFF:
        return NOTFOUND
    if mailbox.relay is not None:
        relay = mailbox.relay
        refused = relay_refusal(relay.host, relay.smtp_port)
        if refused:
            # The error transport bounces the mail with these words; nothing is sent.
            return ok(f"error:5.7.1 {refused}")
        hop = _next_hop(relay.host, relay.smtp_port)
        if relay.signs_in:
            oauth = OAUTH_TRANSPORTS.get(relay.smtp_security)
            if oauth is None:  # the model refuses it; a token never travels in clear
                return ok("error:5.7.1 an OAuth relay needs STARTTLS or SSL/TLS")
            return ok(f"{oauth}:{hop}")
        return ok(f"{TRANSPORTS[relay.smtp_security]}:{hop}")
    smart_host = _smart_host(mailbox.domain)
    if smart_host:
        host, _, port = smart_host.rpartition(":")
        return ok(f"isp_starttls:{_next_hop(host or smart_host, int(port or 587))}")
    return NOTFOUND


def relay_credentials(key: str, ctx: Context) -> Reply:
    mailbox = ctx.source.mailbox(key)
    if mailbox is None or mailbox.relay is None or mailbox.relay.signs_in:
        return NOTFOUND  # also the "[host]:port" key Postfix tries after the sender
    username, password = mailbox.relay.credentials()
    if ":" in username:
        # smtp_sasl_password_maps splits "user:password" at the first colon.
        return temp("the ISP login contains ':'")
    return ok(f"{username}:{password}")


MAPS = {
    "domains": domains,
    "mailboxes": mailboxes,
    "transport": transport,
    "recipient": recipient,
    "sender_login": sender_login,
    "outside_sender": outside_sender,
    "sasl_class": sasl_class,
    "internal_only": internal_only,
    "no_relay": no_relay,
    "relay_transport": relay_transport,
    "relay_credentials": relay_credentials,
}
SECRET_MAPS = {"relay_credentials", "oauth_token"}


def oauth_token(key: str) -> Reply:
    """``OK <login>:<access token>`` for a sender relaying by OAuth, fresh from the token
    service (refreshed under its lock when < 5 minutes are left); TEMP with the reason when
    none can be had: the mail is deferred, never sent without authentication."""
    mailbox = mailbox_for_address(key)  # the database, never a snapshot
    if mailbox is None or mailbox.relay is None or not mailbox.relay.signs_in:
        return NOTFOUND
    account = Account.objects.select_related("domain").get(
        domain__name=mailbox.domain, localpart=mailbox.localpart
    )
    binding = account_relay_binding(account=account)
    if binding is None or not binding.oauth_provider:
        return NOTFOUND
    try:
        token = grants.access_token(binding=binding)
    except grants.NeedsSignInError as exc:
        return temp(_printable(f"needs a new sign-in in AAMail: {exc.message}"))
    except OAuthError as exc:
        return temp(_printable(f"token refresh failed: {exc.message}"))
    if ":" in token.login:
        return temp("the ISP login contains ':'")
    return ok(f"{token.login}:{token.token}")


def _printable(text: str) -> str:
    return "".join(ch for ch in text if ch.isprintable())[:400]


TOKEN_MAPS = {"oauth_token": oauth_token}


def token_answer(request: Request) -> Reply:
    """Answer the token socket (only ``TOKEN_MAPS``); TEMP on any error, as ``answer``."""
    lookup = TOKEN_MAPS.get(request.name)
    if lookup is None:
        return perm(f"unknown map {request.name!r}")
    try:
        reply = lookup(request.key)
    except Exception as exc:
        if not connection.in_atomic_block:
            connection.close()
        log.error("mailmap: %s %r failed: %s", request.name, request.key, type(exc).__name__)
        return temp("lookup failed")
    log.debug("mailmap: %s %r -> %s", request.name, request.key, reply.status)
    return reply


def answer(
    request: Request, source: Source | None = None, *, local_transport: str | None = None
) -> Reply:
    """Answer one socketmap request (from the database unless given a snapshot); TEMP on any
    error, never a guess. `local_transport` defaults to the configured Dovecot LMTP socket."""
    lookup = MAPS.get(request.name)
    if lookup is None:
        return perm(f"unknown map {request.name!r}")
    ctx = Context(
        DATABASE if source is None else source, local_transport or layout.local_transport()
    )
    try:
        reply = lookup(request.key, ctx)
    except Exception as exc:
        # A broken connection stays broken in this thread until closed; the next lookup
        # reconnects. Only the exception's type is logged: its text or traceback could quote
        # a decrypted secret.
        if source is None and not connection.in_atomic_block:
            connection.close()
        log.error("mailmap: %s %r failed: %s", request.name, request.key, type(exc).__name__)
        return temp("lookup failed")
    if log.isEnabledFor(logging.DEBUG):
        shown = "(secret)" if request.name in SECRET_MAPS and reply.status == "OK" else reply.data
        log.debug("mailmap: %s %r -> %s %s", request.name, request.key, reply.status, shown)
    return reply


def thread_finished() -> None:
    """Close this thread's database connection (one per socketmap connection)."""
    connection.close()
