"""Detect endpoints (htmx POST), included by mapping/urls.py at the site root."""

from django.urls import path

from . import detect_views

urlpatterns = [
    path(
        "domains/<int:domain_id>/accounts/detect/",
        detect_views.wizard_detect,
        name="account-create-detect",
    ),
    path(
        "accounts/<int:account_id>/pop3/detect/",
        detect_views.account_detect,
        name="binding-detect-new",
    ),
    path(
        "accounts/<int:account_id>/pop3/<int:pk>/detect/",
        detect_views.binding_detect,
        name="binding-detect",
    ),
]
