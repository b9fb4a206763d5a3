"""URLs of Fetch now and fetch history; included from mapping/urls.py."""

from django.urls import path

from . import fetch_views

urlpatterns = [
    path(
        "accounts/<int:account_id>/pop3/<int:pk>/fetch/",
        fetch_views.binding_fetch_now,
        name="binding-fetch-now",
    ),
    path(
        "accounts/<int:account_id>/pop3/<int:pk>/row/",
        fetch_views.binding_row,
        name="binding-row",
    ),
    path(
        "accounts/<int:account_id>/pop3/<int:pk>/history/",
        fetch_views.binding_history,
        name="binding-history",
    ),
]
