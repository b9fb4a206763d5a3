from importlib.util import find_spec

from django.contrib.auth.views import LogoutView
from django.urls import include, path

from . import views

urlpatterns = [
    path("", views.ConsoleHomeView.as_view(), name="console-home"),
    path("login/", views.ConsoleLoginView.as_view(), name="login"),
    path("logout/", LogoutView.as_view(), name="logout"),
    path("domains/<int:domain_id>/accounts/", views.AccountListView.as_view(), name="account-list"),
    path("accounts/<int:pk>/", views.AccountGeneralView.as_view(), name="account-general"),
    path("accounts/<int:pk>/delete/", views.AccountDeleteView.as_view(), name="account-delete"),
]
if find_spec("accounts.selfservice_urls"):
    urlpatterns.append(path("me/", include("accounts.selfservice_urls")))
if find_spec("accounts.wizard_urls"):
    urlpatterns.append(path("", include("accounts.wizard_urls")))
