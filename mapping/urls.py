from django.urls import path

from . import views
from .oauth import views as sign_in

urlpatterns = [
    # The POP3 remote tab of the Account dialog.
    path("accounts/<int:account_id>/pop3/", views.BindingListView.as_view(), name="binding-list"),
    path(
        "accounts/<int:account_id>/pop3/new/",
        views.BindingCreateView.as_view(),
        name="binding-create",
    ),
    path(
        "accounts/<int:account_id>/pop3/<int:pk>/",
        views.BindingUpdateView.as_view(),
        name="binding-edit",
    ),
    path(
        "accounts/<int:account_id>/pop3/<int:pk>/delete/",
        views.BindingDeleteView.as_view(),
        name="binding-delete",
    ),
    # Fetch now and history (htmx fragments of a binding's row).
    path(
        "accounts/<int:account_id>/pop3/<int:pk>/fetch/",
        views.binding_fetch_now,
        name="binding-fetch-now",
    ),
    path("accounts/<int:account_id>/pop3/<int:pk>/row/", views.binding_row, name="binding-row"),
    path(
        "accounts/<int:account_id>/pop3/<int:pk>/history/",
        views.binding_history,
        name="binding-history",
    ),
    # Detect (htmx): the wizard's Map settings step, a new and an existing binding.
    path(
        "domains/<int:domain_id>/accounts/detect/",
        views.wizard_detect,
        name="account-create-detect",
    ),
    path("accounts/<int:account_id>/pop3/detect/", views.account_detect, name="binding-detect-new"),
    path(
        "accounts/<int:account_id>/pop3/<int:pk>/detect/",
        views.binding_detect,
        name="binding-detect",
    ),
    # "Sign in with Microsoft / Google" (issue 15). The callback's path is what each
    # provider has registered: <OAUTH_REDIRECT_BASE_URL>/oauth/callback/<provider>/.
    path(
        "accounts/<int:account_id>/pop3/<int:pk>/sign-in/",
        sign_in.sign_in_start,
        name="binding-sign-in",
    ),
    path(
        "accounts/<int:account_id>/pop3/<int:pk>/sign-in/device/",
        sign_in.device_start,
        name="binding-sign-in-device",
    ),
    path(
        "accounts/<int:account_id>/pop3/<int:pk>/sign-in/device/poll/",
        sign_in.device_poll,
        name="binding-sign-in-device-poll",
    ),
    path("oauth/callback/<str:provider>/", sign_in.sign_in_callback, name="oauth-callback"),
]
