"""The POP3 remote tab's form: one remote POP3 account, passwords write-only."""

from __future__ import annotations

from django import forms

from accounts.models import Account

from .models import Binding, LeavePolicy


def _password_field(label: str, help_text: str) -> forms.CharField:
    return forms.CharField(
        label=label,
        required=False,
        strip=False,
        help_text=help_text,
        # render_value=False: a stored password is never sent back to the browser.
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
    )


class BindingForm(forms.ModelForm):
    isp_password = _password_field(
        "ISP password", "The password of the mailbox at the ISP. Stored encrypted."
    )
    smtp_password = _password_field("SMTP password", "Leave blank to use the ISP password above.")

    class Meta:
        model = Binding
        fields = [
            "host",
            "port",
            "security",
            "username",
            "isp_password",
            "leave_policy",
            "delete_after_days",
            "fetch_interval_minutes",
            "enabled",
            "smtp_host",
            "smtp_port",
            "smtp_security",
            "smtp_username",
            "smtp_password",
            "is_outgoing_relay",
        ]
        help_texts = {
            "host": "e.g. mail.isp.example",
            "smtp_host": "Leave blank to use the ISP server address.",
            "smtp_username": "Leave blank to use the ISP account.",
            "delete_after_days": "Only for “Delete from the server after N days”.",
            "is_outgoing_relay": "Mail this account sends leaves through this ISP mailbox.",
        }

    def __init__(self, *args, account: Account, **kwargs):
        super().__init__(*args, **kwargs)
        self.instance.account = account
        self.fields["leave_policy"].choices = LeavePolicy.choices
        if self.instance.pk:
            self.fields[
                "isp_password"
            ].help_text = "Leave blank to keep the stored password (it is never shown)."
        else:
            domain = account.domain
            # New bindings start from the domain's ISP defaults.
            self.initial.setdefault("host", domain.pop3_host)
            self.initial.setdefault("port", domain.pop3_port)
            self.initial.setdefault("security", domain.pop3_security)
            self.initial.setdefault("smtp_host", domain.smtp_host)
            self.initial.setdefault("smtp_port", domain.smtp_port)
            self.initial.setdefault("smtp_security", domain.smtp_security)

    def clean(self):
        cleaned = super().clean()
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
