from django.urls import path

from . import views

urlpatterns = [
    path("", views.DomainListView.as_view(), name="domain-list"),
    path("new/", views.DomainCreateView.as_view(), name="domain-create"),
    path("<int:pk>/edit/", views.DomainUpdateView.as_view(), name="domain-edit"),
]
