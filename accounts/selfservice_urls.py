from django.urls import path

from . import selfservice

urlpatterns = [
    path("", selfservice.selfservice, name="selfservice"),
    path("password/", selfservice.selfservice_password, name="selfservice-password"),
]
