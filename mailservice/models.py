"""The mail service's one table: what the relay watch saw of each binding's outgoing relay.

Accounts, domains and bindings belong to the other apps; the Dovecot view
(dovecot_view.py) is kept out of migrations by this app's pre/post_migrate signals.
"""

from __future__ import annotations

from django.db import models

from mapping.models import Binding


class RelayState(models.TextChoices):
    OK = "ok", "OK"
    FAILING = "failing", "Failing"


class RelayStatus(models.Model):
    """Outgoing mail of the account whose relay this binding is, as Postfix holds it.

    Written only by the relay watch (relaywatch.py) from Postfix's queue and its bounce
    notices; a binding without a row has never had mail wait or bounce. The Overview, the
    POP3 remote tab, /me/ and the alerts read it.
    """

    binding = models.OneToOneField(Binding, on_delete=models.CASCADE, related_name="relay_status")
    state = models.CharField(max_length=16, choices=RelayState.choices, default=RelayState.OK)
    # When the mail that waits now first failed (its arrival in the queue); None while OK.
    failing_since = models.DateTimeField("Failing since", null=True, blank=True)
    last_error = models.TextField("Last error", blank=True)
    # Messages of this sender waiting in Postfix's queue at the last check.
    deferred = models.PositiveIntegerField("Waiting in the queue", default=0)
    # Messages returned to the sender since the row exists (a running count).
    bounced = models.PositiveIntegerField("Returned to the sender", default=0)
    checked_at = models.DateTimeField("Last check", null=True, blank=True)

    class Meta:
        verbose_name = "outgoing relay status"
        verbose_name_plural = "outgoing relay statuses"

    def __str__(self) -> str:
        return f"relay of binding {self.binding_id}: {self.state}"
