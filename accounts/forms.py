from django import forms
from django.contrib.auth.password_validation import validate_password

from .models import Account


class AccountGeneralForm(forms.ModelForm):
    """The Account dialog's General tab; a new local password is optional here."""

    new_password = forms.CharField(
        label="New local password",
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Leave blank to keep the current one. Not related to any ISP password.",
    )

    class Meta:
        model = Account
        fields = ["display_name", "kind", "quota_mb", "is_active"]

    def clean_new_password(self) -> str:
        # Only checked here; the view stores it through the one local-password service.
        password = self.cleaned_data.get("new_password", "")
        if password:
            validate_password(password, self.instance)
        return password


class AccountSearchForm(forms.Form):
    q = forms.CharField(label="Search accounts", required=False, max_length=100)
