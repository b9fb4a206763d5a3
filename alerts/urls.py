from django.urls import path

from . import views

urlpatterns = [
    path("<int:pk>/alerts/", views.AlertSettingsView.as_view(), name="alert-settings"),
]
