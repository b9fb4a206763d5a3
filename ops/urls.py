from django.urls import path

from . import views

urlpatterns = [
    path("overview/", views.overview, name="overview"),
    # Set-aside (poison) messages: listed on the Overview and the POP3 remote tab.
    path("quarantine/<int:pk>/retry/", views.held_retry, name="held-retry"),
    path("quarantine/<int:pk>/forget/", views.held_forget, name="held-forget"),
    path("quarantine/<int:pk>/message.eml", views.held_download, name="held-download"),
    # Prometheus' default path, no trailing slash.
    path("metrics", views.metrics, name="metrics"),
]
