from django.contrib import admin
from django.urls import include, path

from accounts.login import ThrottledAdminAuthenticationForm

# /admin/login/ checks passwords too: on the same throttle as the console's login.
admin.site.login_form = ThrottledAdminAuthenticationForm

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("accounts.urls")),
    path("domains/", include("domains.urls")),
    path("", include("mapping.urls")),
    path("", include("ops.urls")),  # the Overview, set-aside messages, /metrics (issue 12)
]
