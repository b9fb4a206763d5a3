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
                "Standard mode: accounts cannot be bound to ISP mailboxes. Map mail server "
                "mode: every account may have remote POP3 accounts. Share mode: every account "
                "except special local staff."
            ),
            "pop3_host": "Pre-filled in Map settings for new accounts, e.g. mail.isp.example.",
        }

    def __init__(self, *args, name_editable: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        if not name_editable:
            # A domain's administrator edits its settings, not which domain it is.
            self.fields["name"].disabled = True
