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
            "domain_type": "Map mail server mode: every account may be bound to an ISP mailbox.",
            "pop3_host": "Pre-filled in Map settings for new accounts, e.g. mail.isp.example.",
        }

    def __init__(self, *args, name_editable: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        if not name_editable:
            # A domain's administrator edits its settings, not which domain it is.
            self.fields["name"].disabled = True
