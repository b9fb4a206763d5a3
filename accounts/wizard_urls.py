"""URLs of the Account creation wizard: one URL per step (formtools NamedUrlSessionWizardView).

Included by accounts/urls.py at the site root: path("", include("accounts.wizard_urls")).
"""

from django.urls import path

from .wizard import AccountCreationWizard

_wizard = AccountCreationWizard.as_view(url_name="account-create-step", done_step_name="done")

urlpatterns = [
    # The toolbar's "Account" button: resumes an unfinished wizard, or starts one.
    path("domains/<int:domain_id>/accounts/new/", _wizard, name="account-create"),
    path("domains/<int:domain_id>/accounts/new/<str:step>/", _wizard, name="account-create-step"),
]
