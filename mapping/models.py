"""Remote POP3 accounts (bindings), their UIDL record and fetch history."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models, transaction
from django.utils import timezone

from accounts.models import Account
from domains.models import PORT_VALIDATORS, Security
from domains.names import normalize_domain_name
from domains.rules import binding_rule_text

from . import crypto
from .pop3 import check_value


def validate_protocol_safe(value: str) -> None:
    """Refuse CR, LF and NUL: the value goes into a POP3/SMTP command line (poplib trap)."""
    try:
        check_value("value", value)
    except ValueError:
        raise ValidationError("Line breaks and NUL characters are not allowed here.") from None


class LeavePolicy(models.TextChoices):
    KEEP = "keep", "Keep messages on the server"
    DELETE = "delete", "Delete from the server once stored"
    DELETE_AFTER = "delete_after", "Delete from the server after N days"


class BindingState(models.TextChoices):
    NEW = "new", "Not fetched yet"
    OK = "ok", "OK"
    RETRYING = "retrying", "Temporary error, retrying"
    NEEDS_ATTENTION = "needs_attention", "Needs attention"
    # Issue 15: the OAuth grant is gone (invalid_grant) or was never made; paused until a
    # person signs the mailbox in again.
    NEEDS_SIGN_IN = "needs_sign_in", "Needs sign-in"


class AuthMethod(models.TextChoices):
    """How a binding logs in to its ISP (issue 15); mapping.credentials acts on it."""

    PASSWORD = "password", "ISP password"
    MICROSOFT = "oauth2_microsoft", "Sign in with Microsoft"
    GOOGLE = "oauth2_google", "Sign in with Google"
    GENERIC = "oauth2_generic", "Sign in with the ISP (OAUTHBEARER)"


# AuthMethod -> the provider name of mapping.oauth.providers
OAUTH_PROVIDERS = {
    AuthMethod.MICROSOFT: "microsoft",
    AuthMethod.GOOGLE: "google",
    AuthMethod.GENERIC: "generic",
}


class Binding(models.Model):
    """A "Remote POP3 account": an ISP mailbox downloaded into an internal account."""

    # No index of its own: binding_unique_mailbox starts with the account (issue 13: with
    # no indexed column moving, a fetch's status write is a HOT update).
    account = models.ForeignKey(
        Account, on_delete=models.CASCADE, related_name="bindings", db_index=False
    )
    host = models.CharField("ISP server address", max_length=253)
    port = models.PositiveIntegerField("Port", default=995, validators=PORT_VALIDATORS)
    security = models.CharField(
        "Security", max_length=16, choices=Security.choices, default=Security.SSL
    )
    username = models.CharField("ISP account", max_length=255, validators=[validate_protocol_safe])
    password_encrypted = models.TextField(editable=False, blank=True)
    auth_method = models.CharField(
        "Sign-in",
        max_length=20,
        choices=AuthMethod.choices,
        default=AuthMethod.PASSWORD,
        db_default=AuthMethod.PASSWORD,  # rows written by raw SQL (bench fills) sign in by password
    )
    leave_policy = models.CharField(
        "Messages on the server",
        max_length=16,
        choices=LeavePolicy.choices,
        default=LeavePolicy.KEEP,
    )
    delete_after_days = models.PositiveIntegerField(
        "Delete after (days)",
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(3650)],
    )
    fetch_interval_minutes = models.PositiveIntegerField(
        "Fetch every (minutes)",
        default=5,
        validators=[MinValueValidator(1), MaxValueValidator(1440)],
    )
    enabled = models.BooleanField("Enabled", default=True)

    # SMTP relay for mail this account sends out; blank host/credentials = the POP3 ones.
    smtp_host = models.CharField("ISP SMTP server", max_length=253, blank=True)
    smtp_port = models.PositiveIntegerField("SMTP port", default=587, validators=PORT_VALIDATORS)
    smtp_security = models.CharField(
        "SMTP security", max_length=16, choices=Security.choices, default=Security.STARTTLS
    )
    smtp_username = models.CharField(
        "SMTP account", max_length=255, blank=True, validators=[validate_protocol_safe]
    )
    smtp_password_encrypted = models.TextField(editable=False, blank=True)
    is_outgoing_relay = models.BooleanField("Outgoing relay", default=False)

    # Live status, written only by mapping.fetch.
    state = models.CharField(max_length=20, choices=BindingState.choices, default=BindingState.NEW)
    last_check_at = models.DateTimeField("Last check", null=True, blank=True)
    last_success_at = models.DateTimeField("Last success", null=True, blank=True)
    last_error = models.TextField("Last error", blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)
    # When the current run of failures began (None while OK): alerts and the Overview read it.
    failing_since = models.DateTimeField("Failing since", null=True, blank=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    messages_fetched = models.PositiveBigIntegerField("Messages fetched", default=0)
    bytes_fetched = models.PositiveBigIntegerField("Bytes fetched", default=0)
    # A pipelined batch of this server's replies could not be trusted: RETR one message at
    # a time until a session goes clean (mapping.fetch).
    retr_one_at_a_time = models.BooleanField(default=False, db_default=False, editable=False)
    # Rows of this binding in the quarantine (mapping.quarantine): a fetch of a binding with
    # none asks the database nothing more (issue 12).
    quarantine_entries = models.PositiveIntegerField(default=0, db_default=0, editable=False)
    # Issue 13: whether an earlier run may have left rows the next fetch must read (UIDL
    # records, intents, an unfinished history row). False lets an empty poll cost the
    # database only its claim and its release; True (the default, also for rows written by
    # raw SQL) only costs the reads, and the next successful run says what is left.
    fetch_rows = models.BooleanField(default=True, db_default=True, editable=False)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        # By id only: ordering by account would join (and on a claim, lock) account rows.
        ordering = ["id"]
        verbose_name = "remote POP3 account"
        constraints = [
            models.CheckConstraint(
                condition=models.Q(security__in=Security.values), name="binding_security_valid"
            ),
            models.CheckConstraint(
                condition=~models.Q(leave_policy="delete_after")
                | models.Q(delete_after_days__isnull=False),
                name="binding_delete_after_has_days",
            ),
            models.UniqueConstraint(
                fields=["account", "host", "port", "username"], name="binding_unique_mailbox"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.username}@{self.host}:{self.port} → {self.account_id}"

    __repr__ = __str__  # never the password, even by accident

    @property
    def oauth_provider(self) -> str:
        """ "microsoft", "google" or "generic" for an OAuth binding; "" for a password."""
        return OAUTH_PROVIDERS.get(self.auth_method, "")

    def set_isp_password(self, raw: str) -> None:
        """Store the ISP password encrypted; the clear text is never kept."""
        self.password_encrypted = crypto.encrypt(raw)

    def get_isp_password(self) -> str:
        """Decrypt the ISP password for a login; call just before using it."""
        return crypto.decrypt(self.password_encrypted)

    def set_smtp_password(self, raw: str) -> None:
        self.smtp_password_encrypted = crypto.encrypt(raw) if raw else ""

    def smtp_credentials(self) -> tuple[str, str]:
        """(username, password) for the SMTP relay; the ISP password unless one of its own."""
        if self.smtp_password_encrypted:
            return self.smtp_username, crypto.decrypt(self.smtp_password_encrypted)
        return self.smtp_username, self.get_isp_password()

    @property
    def fetch_running(self) -> bool:
        """A fetch holds this binding's lease right now (mapping.lease); no query when the
        schedule came with the binding (``select_related("schedule")``)."""
        return self.schedule.fetch_running

    def clean(self) -> None:
        if self.host:
            self.host = normalize_domain_name(self.host, field_label="ISP server address")
        # A blank SMTP server or account is filled in once, here, and stored: a relay that
        # followed the domain's defaults would send stored credentials wherever a later
        # edit of those defaults pointed (issue 11: credentials are bound to their server).
        if not self.smtp_host and self.account_id:
            self.smtp_host = self.account.domain.smtp_host or self.host
        if self.smtp_host:
            self.smtp_host = normalize_domain_name(self.smtp_host, field_label="ISP SMTP server")
        self.smtp_username = self.smtp_username or self.username
        if self.oauth_provider:
            _clean_oauth(self)
        elif not self.password_encrypted:
            raise ValidationError({"username": "The ISP password is required."})
        if self.leave_policy == LeavePolicy.DELETE_AFTER and not self.delete_after_days:
            raise ValidationError(
                {"delete_after_days": "Say after how many days messages are deleted."}
            )
        if self.account_id and not self.account.may_have_bindings:
            account = self.account
            raise ValidationError(
                f"{account.address} ({account.get_kind_display()}) cannot have remote POP3 "
                f"accounts: {domain_rule(account)}"
            )

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.full_clean()
        if not self._state.adding:
            super().save(*args, **kwargs)
            return
        # Every binding has its schedule row (the claim reads no binding without one).
        with transaction.atomic():
            super().save(*args, **kwargs)
            Schedule.objects.create(binding=self, next_fetch_at=self._first_fetch_at())

    def _first_fetch_at(self) -> datetime | None:
        # Due at once, unless it may not be fetched yet (disabled, waiting for a sign-in).
        waiting = self.state in (BindingState.NEEDS_SIGN_IN, BindingState.NEEDS_ATTENTION)
        return timezone.now() if self.enabled and not waiting else None


class Schedule(models.Model):
    """When a binding is fetched next and which fetch holds it now: the fetch queue's row.

    Issue 13: apart from the wide binding row, so that a claim writes a narrow row (and its
    one index) and a fetch's status write to the binding moves no indexed column. The claim
    (``mapping.claim``) takes due rows in ``next_fetch_at`` order; the lease
    (``mapping.lease``) fences every write of a fetch on this row. ``next_fetch_at`` is
    empty while the binding may not be fetched on schedule: disabled, or waiting for an edit
    or a sign-in. While a fetch runs it is the lease's expiry (the claim's marker).
    """

    binding = models.OneToOneField(
        Binding, on_delete=models.CASCADE, primary_key=True, related_name="schedule"
    )
    next_fetch_at = models.DateTimeField("Next fetch", null=True, blank=True)
    # Fence for the one-fetch-at-a-time lease (design.md: a lock that can expire needs one),
    # and who holds it ("host|pid|process start|since", mapping.lease.Holder).
    lease_token = models.UUIDField(null=True, blank=True, editable=False)
    lease_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    lease_holder = models.CharField(
        max_length=300, blank=True, editable=False, default="", db_default=""
    )

    class Meta:
        # The claim's and the lag's one index: due rows by time, the unscheduled left out.
        indexes = [
            models.Index(
                fields=["next_fetch_at"],
                condition=models.Q(next_fetch_at__isnull=False),
                name="schedule_due_idx",
            )
        ]

    def __str__(self) -> str:
        return f"schedule of binding {self.binding_id}"

    @property
    def upcoming(self) -> datetime | None:
        """The next fetch's time while it is ahead; None once it is due (the console says
        "soon": a claimer takes it at its next claim, the lag banner says if that is late)."""
        due = self.next_fetch_at
        return due if due and due > timezone.now() else None

    @property
    def fetch_running(self) -> bool:
        """A fetch holds the lease right now (mapping.lease); no query."""
        expires = self.lease_expires_at
        return bool(self.lease_token and expires and expires > timezone.now())


def _clean_oauth(binding: Binding) -> None:
    # An access token never travels in plain text (oauth2.md §4 snag 5: Dovecot counts
    # loopback as secure and would take it; the client refuses by itself too).
    label = binding.get_auth_method_display()
    errors = {}
    if binding.security == Security.NONE:
        errors["security"] = f"{label} sends an access token: choose SSL/TLS or STARTTLS."
    if binding.smtp_security == Security.NONE:
        errors["smtp_security"] = f"{label} sends an access token: choose SSL/TLS or STARTTLS."
    if errors:
        raise ValidationError(errors)


def domain_rule(account: Account) -> str:
    return binding_rule_text(account.domain.domain_type)


class SeenUidl(models.Model):
    """One message of a remote mailbox known to be stored locally (or about to be).

    The row is the truth for "already fetched": written as an intent (`stored_at` empty,
    with the Maildir file name) before the file is renamed into new/, completed after.
    """

    binding = models.ForeignKey(Binding, on_delete=models.CASCADE, related_name="seen_uidls")
    uidl = models.CharField(max_length=255)
    maildir_name = models.CharField(max_length=255, blank=True)
    size = models.PositiveBigIntegerField(default=0)
    first_seen_at = models.DateTimeField()
    stored_at = models.DateTimeField(null=True, blank=True)
    deleted_on_server_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["binding", "uidl"], name="seenuidl_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.uidl} ({'stored' if self.stored_at else 'pending'})"


class FetchOutcome(models.TextChoices):
    RUNNING = "running", "Running"
    OK = "ok", "OK"
    ERROR = "error", "Error"
    AUTH_FAILED = "auth_failed", "Password rejected"
    NEEDS_SIGN_IN = "needs_sign_in", "Needs sign-in"
    SKIPPED = "skipped", "Skipped (another fetch holds the mailbox)"


class FetchRun(models.Model):
    """One fetch attempt of a binding, for the short history shown in the console."""

    binding = models.ForeignKey(Binding, on_delete=models.CASCADE, related_name="fetch_runs")
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(
        max_length=16, choices=FetchOutcome.choices, default=FetchOutcome.RUNNING
    )
    trigger = models.CharField(max_length=16, default="schedule")  # schedule | manual | command
    messages = models.PositiveIntegerField(default=0)
    bytes = models.PositiveBigIntegerField(default=0)
    deleted = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at"]
        indexes = [
            models.Index(fields=["binding", "-started_at"]),
            # The retention task's walk over old rows (mapping.retention, issue 12).
            models.Index(fields=["started_at"], name="fetchrun_started_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.started_at:%Y-%m-%d %H:%M} {self.outcome}"


# --- Operations: poison-message quarantine and daily totals (issue 12) ----------------------


class QuarantineState(models.TextChoices):
    SUSPECT = "suspect", "Failed, tried again at the next run"
    HELD = "held", "Set aside"
    FORGOTTEN = "forgotten", "Forgotten (left on the server, not fetched)"


class QuarantinedMessage(models.Model):
    """A message of a remote mailbox that failed to come in (mapping.quarantine).

    A row counts the runs in a row that failed on the message (``suspect``); at
    QUARANTINE_AFTER_FAILURES it is set aside (``held``): skipped by every fetch, never
    deleted at the ISP, listed with its reason until an administrator retries or forgets it.
    The row goes when the message is stored or leaves the server.
    """

    binding = models.ForeignKey(Binding, on_delete=models.CASCADE, related_name="quarantine")
    uidl = models.CharField(max_length=255)  # the identity fetch.py gives it (its UIDL)
    state = models.CharField(
        max_length=16, choices=QuarantineState.choices, default=QuarantineState.SUSPECT
    )
    failures = models.PositiveIntegerField(default=0)
    reason = models.TextField("Reason")
    size = models.PositiveBigIntegerField(default=0)  # as LIST announced it
    first_failed_at = models.DateTimeField()
    last_failed_at = models.DateTimeField()
    held_at = models.DateTimeField("Set aside", null=True, blank=True)
    # Bytes kept (trace header included) when the message was read but not delivered.
    kept_bytes = models.PositiveBigIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-held_at", "-pk"]
        constraints = [
            models.UniqueConstraint(fields=["binding", "uidl"], name="quarantine_unique"),
        ]
        indexes = [models.Index(fields=["state", "-held_at"], name="quarantine_state_idx")]

    def __str__(self) -> str:
        return f"{self.uidl} ({self.state})"


class QuarantineChunk(models.Model):
    """A piece of the bytes kept for a set-aside message, so neither side holds it whole."""

    message = models.ForeignKey(QuarantinedMessage, on_delete=models.CASCADE, related_name="chunks")
    seq = models.PositiveIntegerField()
    data = models.BinaryField()

    class Meta:
        ordering = ["seq"]
        constraints = [
            models.UniqueConstraint(fields=["message", "seq"], name="quarantinechunk_unique"),
        ]

    def __str__(self) -> str:
        return f"piece {self.seq} of message {self.message_id}"


class FetchDay(models.Model):
    """One binding's fetch totals for one day (server time zone), for the Overview's chart.

    Written when a run stores mail or fails (mapping.daily), never on an empty poll, so
    ``runs`` counts those runs, not every poll. Kept FETCH_DAILY_DAYS (mapping.retention).
    """

    binding = models.ForeignKey(Binding, on_delete=models.CASCADE, related_name="days")
    day = models.DateField()
    runs = models.PositiveIntegerField(default=0)
    failures = models.PositiveIntegerField(default=0)
    messages = models.PositiveBigIntegerField(default=0)
    bytes = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["binding", "day"], name="fetchday_unique"),
        ]
        indexes = [models.Index(fields=["day"], name="fetchday_day_idx")]

    def __str__(self) -> str:
        return f"{self.day} binding {self.binding_id}: {self.messages} messages"


# --- OAuth sign-in (issue 15) ----------------------------------------------------------------


class OAuthState(models.TextChoices):
    OK = "ok", "Signed in"
    NEEDS_SIGN_IN = "needs_sign_in", "Needs sign-in"


class OAuthCredential(models.Model):
    """The OAuth grant of one binding: who signed in, and its tokens, encrypted.

    Both tokens are MultiFernet ciphertext (mapping.crypto, the ISP password keys, rotated by
    ``rotate_isp_keys``); only mapping.oauth.grants decrypts them, just before use. ``version``
    goes up with every refresh: a worker that waited for the row lock sees that someone else
    refreshed and uses that token instead of spending the refresh token twice.
    """

    binding = models.OneToOneField(
        Binding, on_delete=models.CASCADE, related_name="oauth_credential"
    )
    provider = models.CharField(max_length=16)  # mapping.oauth.providers.NAMES
    remote_login = models.CharField("Signed-in mailbox", max_length=255)
    scopes = models.TextField(blank=True)
    refresh_token_encrypted = models.TextField(editable=False)
    access_token_encrypted = models.TextField(editable=False, blank=True)
    access_expires_at = models.DateTimeField(null=True, blank=True)
    version = models.PositiveIntegerField(default=0)
    state = models.CharField(max_length=16, choices=OAuthState.choices, default=OAuthState.OK)
    last_error = models.TextField(blank=True)
    signed_in_at = models.DateTimeField()
    signed_in_by = models.CharField(max_length=255, blank=True)  # the console login
    last_refresh_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "OAuth sign-in"

    def __str__(self) -> str:
        return f"{self.provider} sign-in of {self.remote_login} ({self.state})"

    __repr__ = __str__  # never a token, even by accident
