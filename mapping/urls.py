from django.urls import include, path

from . import views

urlpatterns = [
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
]
urlpatterns += [
    path("", include("mapping.detect_urls")),
    path("", include("mapping.fetch_urls")),
]
