from django.contrib import admin
from django.urls import path

from pages import views

admin.site.site_header = "Project 2 administration"

urlpatterns = [
    path("", views.home),
    path("admin/", admin.site.urls),
]
