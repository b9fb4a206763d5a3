from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.templatetags.static import static
from django.urls import include, path

from accounts.login import ThrottledAdminAuthenticationForm

# /admin/login/ checks passwords too: on the same throttle as the console's login.
admin.site.login_form = ThrottledAdminAuthenticationForm


def favicon(request: HttpRequest) -> HttpResponse:
    """/favicon.ico, asked by browsers on pages without the link (the admin's, files)."""
    return redirect(static("favicon.svg"), permanent=True)


urlpatterns = [
    path("favicon.ico", favicon),
    path("admin/", admin.site.urls),
    path("", include("accounts.urls")),
    path("domains/", include("domains.urls")),
    path("domains/", include("alerts.urls")),
    path("", include("mapping.urls")),
    path("", include("ops.urls")),  # the Overview, set-aside messages, /metrics (issue 12)
    path("audit/", include("audit.urls")),
]
