"""Forms of a remote POP3 account: the POP3 remote tab's, and the wizard's Map settings step.

One field list (``BINDING_FIELDS``) and the model's own labels and validators serve both.
Passwords are write-only: a stored one is never rendered back, a blank field keeps it, and a
stored password is only ever sent to the server it was typed for (issue 11): changing the
server, port, security or account of either side requires typing that side's password again.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.forms.models import fields_for_model

from accounts.forms import WizardStepForm, secret_field
from accounts.models import Account
from domains.names import normalize_domain_name

from . import outbound
from .models import OAUTH_PROVIDERS, AuthMethod, Binding, LeavePolicy, validate_protocol_safe
from .oauth.providers import ProviderError, provider
from .oauth.tokens import mailbox_matches

POP3_ENDPOINT = ("host", "port", "security", "username")
SMTP_ENDPOINT = ("smtp_host", "smtp_port", "smtp_security", "smtp_username")
CONNECTION_FIELDS = [
    *POP3_ENDPOINT,
    "auth_method",
    "isp_password",
    *SMTP_ENDPOINT,
    "smtp_password",
]
POLICY_FIELDS = ["is_outgoing_relay", "leave_policy", "delete_after_days", "fetch_interval_minutes"]
BINDING_FIELDS = [*CONNECTION_FIELDS, *POLICY_FIELDS, "enabled"]
PASSWORDS = ("isp_password", "smtp_password")

HELP = {
    "host": "e.g. mail.isp.example",
    "smtp_host": "Leave blank to use the ISP server address.",
    "smtp_username": "Leave blank to use the ISP account.",
    "delete_after_days": "Only for “Delete from the server after N days”.",
    "is_outgoing_relay": (
        "Mail this account sends to the outside leaves through this ISP SMTP server, with "
        "this ISP login. Without an outgoing relay the account can only write internally."
    ),
    "auth_method": (
        "Microsoft 365 and Gmail take no password from a program: choose Sign in, then sign "
        "in as the ISP account's mailbox with the Sign in button. No password is stored then."
    ),
}
RETYPE = {
    "isp_password": (
        "You changed the POP3 server, port, security or ISP account: type the ISP password "
        "again. A stored password is only ever sent to the server it was typed for."
    ),
    "smtp_password": (
        "You changed the SMTP server, port, security or account: type the SMTP password "
        "again (or the ISP password, if SMTP uses it). A stored password is only ever sent "
        "to the server it was typed for."
    ),
}


def _password(label: str, help_text: str) -> forms.CharField:
    field = secret_field(label, help_text, required=False)
    field.validators.append(validate_protocol_safe)
    return field


def _host(value: str, label: str) -> str:
    return normalize_domain_name(value, field_label=label) if value else ""


def endpoint_moved(before: Binding, cleaned: dict, names: tuple[str, ...]) -> bool:
    """Whether ``cleaned`` names another server, port, security or account than ``before``."""
    for name in names:
        if name not in cleaned:
            continue
        old, new = getattr(before, name), cleaned[name]
        if name.endswith("host"):
            try:
                old, new = _host(str(old), name), _host(str(new), name)
            except ValidationError:
                return True
        if str(old) != str(new):
            return True
    return False


def refuse_guarded_hosts(form: forms.Form, cleaned: dict) -> None:
    """An error on each server the outbound guard would never connect to (issue 11).

    Only a refusal counts here: a name that does not resolve right now may be a passing
    DNS problem, and the fetch says so in words when it meets it.
    """
    policy = outbound.Policy.from_settings()
    for host_field, port_field in (("host", "port"), ("smtp_host", "smtp_port")):
        host, port = cleaned.get(host_field), cleaned.get(port_field)
        if not host or not port or host_field in form.errors:
            continue
        try:
            outbound.resolve(host, int(port), policy=policy, timeout=3.0)
        except outbound.TargetRefusedError as exc:
            form.add_error(host_field, exc.message)
        except outbound.OutboundError:
            pass


def require_retyped(form: forms.Form, before: Binding, cleaned: dict) -> None:
    """Add an error for each side whose endpoint moved while its password was left blank."""
    if endpoint_moved(before, cleaned, POP3_ENDPOINT) and not cleaned.get("isp_password"):
        form.add_error("isp_password", RETYPE["isp_password"])
    smtp_typed = cleaned.get("smtp_password") or (
        cleaned.get("isp_password") and not before.smtp_password_encrypted
    )
    if endpoint_moved(before, cleaned, SMTP_ENDPOINT) and not smtp_typed:
        form.add_error("smtp_password", RETYPE["smtp_password"])


class BindingForm(forms.ModelForm):
    """The POP3 remote tab: add or modify one remote POP3 account."""

    discards_sign_in = False  # an OAuth binding's server, mailbox or provider changed

    isp_password = _password(
        "ISP password", "The password of the mailbox at the ISP. Stored encrypted."
    )
    smtp_password = _password("SMTP password", "Leave blank to use the ISP password above.")

    class Meta:
        model = Binding
        fields = BINDING_FIELDS
        help_texts = HELP

    def __init__(self, *args: Any, account: Account, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.instance.account = account
        self.fields["leave_policy"].choices = LeavePolicy.choices
        self.fields["auth_method"].required = False  # absent: as stored, else a password
        if self.instance.pk:
            self.fields[
                "isp_password"
            ].help_text = "Leave blank to keep the stored password (it is never shown)."
            return
        domain = account.domain
        # New bindings start from the domain's ISP defaults; the first one of an account
        # carries its outgoing mail.
        self.initial.setdefault("host", domain.pop3_host)
        self.initial.setdefault("port", domain.pop3_port)
        self.initial.setdefault("security", domain.pop3_security)
        self.initial.setdefault("smtp_host", domain.smtp_host)
        self.initial.setdefault("smtp_port", domain.smtp_port)
        self.initial.setdefault("smtp_security", domain.smtp_security)
        self.initial.setdefault("is_outgoing_relay", not account.bindings.exists())

    def clean_auth_method(self) -> str:
        stored = self.instance.auth_method if self.instance.pk else AuthMethod.PASSWORD
        return self.cleaned_data.get("auth_method") or stored

    def clean(self) -> dict:
        cleaned = super().clean()
        refuse_guarded_hosts(self, cleaned)
        if cleaned.get("auth_method", AuthMethod.PASSWORD) != AuthMethod.PASSWORD:
            self._clean_oauth(cleaned)
            return cleaned
        if self.instance.pk:  # the instance still holds the stored values until _post_clean
            require_retyped(self, self.instance, cleaned)
            # Back from a sign-in to a password: the grant is of no use any more.
            self.discards_sign_in = self.instance.auth_method != AuthMethod.PASSWORD
        password = cleaned.get("isp_password")
        if password:
            self.instance.set_isp_password(password)
        elif not self.instance.password_encrypted:
            self.add_error("isp_password", "The ISP password is required.")
        if cleaned.get("smtp_password"):
            self.instance.set_smtp_password(cleaned["smtp_password"])
        if cleaned.get("leave_policy") != LeavePolicy.DELETE_AFTER:
            cleaned["delete_after_days"] = None
        return cleaned

    def _clean_oauth(self, cleaned: dict) -> None:
        """Sign in instead of a password (issue 15): no password is kept; a sign-in is bound
        to the servers and mailbox it was made for, like a password (issue 11)."""
        method = cleaned["auth_method"]
        oauth_provider_check(self, method)
        before = self.instance
        self.discards_sign_in = bool(before.pk) and (
            before.auth_method != method
            or endpoint_moved(before, cleaned, POP3_ENDPOINT)
            or endpoint_moved(before, cleaned, SMTP_ENDPOINT[:3])
        )
        # An OAuth binding keeps no ISP password: what was stored for the old method goes.
        before.password_encrypted = before.smtp_password_encrypted = ""
        cleaned["isp_password"] = cleaned["smtp_password"] = ""
        if cleaned.get("leave_policy") != LeavePolicy.DELETE_AFTER:
            cleaned["delete_after_days"] = None


def oauth_provider_check(form: forms.Form, method: str) -> None:
    """An error on the sign-in field when that provider is not set up in the settings."""
    try:
        provider(OAUTH_PROVIDERS[method])
    except ProviderError as exc:
        form.add_error("auth_method", exc.message)


def _with_model_fields(form_class: type[forms.Form], names: list[str]) -> None:
    # The model's labels, choices and validators, so the wizard and the tab cannot drift.
    fields = fields_for_model(Binding, fields=names, help_texts=HELP)
    for name, field in fields.items():
        # A plain form runs no model validation: carry the model's validators over.
        have = {(type(v), getattr(v, "limit_value", None)) for v in field.validators}
        field.validators += [
            v
            for v in Binding._meta.get_field(name).validators
            if (type(v), getattr(v, "limit_value", None)) not in have
        ]
    form_class.declared_fields.update(fields)  # what subclasses inherit
    form_class.base_fields.update(fields)


class MapConnectionForm(WizardStepForm):
    """Where and how to reach the ISP: what Detect needs (passwords may be blank here)."""

    field_order = [*CONNECTION_FIELDS, "test_smtp"]

    isp_password = _password(
        "ISP password", "The password of the mailbox at the ISP. Stored encrypted."
    )
    smtp_password = _password("SMTP password", "Leave blank to use the ISP password.")
    test_smtp = forms.BooleanField(
        label="Test the SMTP relay too",
        required=False,
        help_text="Detect tests the SMTP relay when this mailbox carries outgoing mail.",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["auth_method"].required = False  # absent: an ISP password

    def clean_auth_method(self) -> str:
        return self.cleaned_data.get("auth_method") or AuthMethod.PASSWORD

    def clean_host(self) -> str:
        return _host(self.cleaned_data["host"], "ISP server address")

    def clean_smtp_host(self) -> str:
        return _host(self.cleaned_data["smtp_host"], "SMTP server")


_with_model_fields(MapConnectionForm, [*POP3_ENDPOINT, "auth_method", *SMTP_ENDPOINT])


class MapSettingsForm(MapConnectionForm):
    """The wizard's Map settings step: the connection and what to do with the mail."""

    title = "Map settings"
    field_order = [*CONNECTION_FIELDS, *POLICY_FIELDS]

    def __init__(self, *args: Any, oauth_signed_in: dict | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        del self.fields["test_smtp"]  # Detect's option, not a setting of the binding
        self.fields["leave_policy"].choices = LeavePolicy.choices
        self.fields["is_outgoing_relay"].initial = True
        # The sign-in the wizard holds (sealed): {"provider", "remote_login"}, or None.
        self.oauth_signed_in = oauth_signed_in

    def clean(self) -> dict:
        cleaned = super().clean()
        refuse_guarded_hosts(self, cleaned)
        method = cleaned.get("auth_method") or AuthMethod.PASSWORD
        if method != AuthMethod.PASSWORD:
            self._clean_oauth(cleaned, method)
        elif not cleaned.get("isp_password") and "isp_password" not in self.errors:
            self.add_error("isp_password", "The ISP password is required.")
        if cleaned.get("leave_policy") == LeavePolicy.DELETE_AFTER:
            if not cleaned.get("delete_after_days"):
                self.add_error("delete_after_days", "Say after how many days messages go.")
        else:
            cleaned["delete_after_days"] = None
        return cleaned

    def _clean_oauth(self, cleaned: dict, method: str) -> None:
        oauth_provider_check(self, method)
        label = dict(AuthMethod.choices)[method]
        for name in ("security", "smtp_security"):
            if cleaned.get(name) == "none":
                self.add_error(name, f"{label} sends an access token: choose SSL/TLS or STARTTLS.")
        held = self.oauth_signed_in or {}
        now = {
            name: str(cleaned.get(name, "")).strip().lower() for name in held.get("endpoint", {})
        }
        if (
            held.get("provider") != OAUTH_PROVIDERS[method]
            or not mailbox_matches(held.get("remote_login", ""), cleaned.get("username", ""))
            or held.get("endpoint") != now  # a sign-in serves the servers it was made for
        ):
            who = cleaned.get("username") or "the ISP account"
            self.add_error(
                "auth_method", f"Press “{label}” below and sign in as {who} before you go on."
            )
        cleaned["isp_password"] = cleaned["smtp_password"] = ""


_with_model_fields(MapSettingsForm, POLICY_FIELDS)
