from typing import Any

from django import forms

from .models import Domain


class DomainForm(forms.ModelForm):
    class Meta:
        model = Domain
        fields = [
            "name",
            "domain_type",
            "pop3_host",
            "pop3_port",
            "pop3_security",
            "smtp_host",
            "smtp_port",
            "smtp_security",
            "is_active",
        ]
        help_texts = {
            "domain_type": (
                "Standard mode: this office is the domain's mail server; accounts cannot be "
                "bound to ISP mailboxes, and mail to an address without an account here is "
                "refused. Map mail server mode: the domain stays hosted at the ISP and every "
                "account may have remote POP3 accounts; mail to an address of the domain that "
                "has no account here (a colleague with only an ISP mailbox) goes out through "
                "the sender's ISP relay, like outside mail. Share mode: the same, but special "
                "local staff accounts cannot have remote POP3 accounts."
            ),
            "pop3_host": "Pre-filled in Map settings for new accounts, e.g. mail.isp.example.",
        }

    def __init__(self, *args: Any, name_editable: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not name_editable:
            # A domain's administrator edits its settings, not which domain it is.
            self.fields["name"].disabled = True
