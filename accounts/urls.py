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
    path("", include("accounts.wizard_urls")),
    path("me/", include("accounts.selfservice_urls")),
]
