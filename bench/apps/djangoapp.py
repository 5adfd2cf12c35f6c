"""A Django page as a Django site serves it: the fortunes page of tfb.py, through the ORM and a
Django template, behind the middleware `django-admin startproject` writes into settings.py.

    /fortunes/   every fortune plus one added at request time, sorted by message, rendered by
                 a Django template (HTML-escaped)

One module is the whole project (settings, model, view, URLs), so every server loads it the same
way, as `application` from this file. The database is tfb.py's (tfb_db.json next to this file),
with persistent connections (CONN_MAX_AGE = None: one connection per Python thread, kept between
requests, as a site that does not want a connect per request sets it). DEBUG is off, as in
production: with it on, Django keeps every query a thread makes.
"""
import json
import os

import django
from django.conf import settings

HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(HERE, "tfb_db.json")) as _f:
    DB = json.load(_f)

TEMPLATE = ("<!DOCTYPE html><html><head><title>Fortunes</title></head><body><table>"
            "<tr><th>id</th><th>message</th></tr>"
            "{% for f in fortunes %}<tr><td>{{ f.id }}</td><td>{{ f.message }}</td></tr>"
            "{% endfor %}</table></body></html>")

settings.configure(
    DEBUG=False,
    SECRET_KEY="bench-only, never served outside this machine",
    ALLOWED_HOSTS=["*"],
    ROOT_URLCONF=__name__,
    INSTALLED_APPS=["django.contrib.auth", "django.contrib.contenttypes",
                    "django.contrib.sessions", "django.contrib.messages"],
    # startproject's list, in its order
    MIDDLEWARE=["django.middleware.security.SecurityMiddleware",
                "django.contrib.sessions.middleware.SessionMiddleware",
                "django.middleware.common.CommonMiddleware",
                "django.middleware.csrf.CsrfViewMiddleware",
                "django.contrib.auth.middleware.AuthenticationMiddleware",
                "django.contrib.messages.middleware.MessageMiddleware",
                "django.middleware.clickjacking.XFrameOptionsMiddleware"],
    TEMPLATES=[{"BACKEND": "django.template.backends.django.DjangoTemplates", "DIRS": [],
                "APP_DIRS": False,
                # the cached loader, as Django sets it up with DEBUG off and no loaders given
                "OPTIONS": {"loaders": [("django.template.loaders.cached.Loader", [
                    ("django.template.loaders.locmem.Loader", {"fortunes.html": TEMPLATE})])]}}],
    DATABASES={"default": {"ENGINE": "django.db.backends.postgresql", "NAME": DB["dbname"],
                           "USER": DB["user"], "HOST": DB["host"], "PORT": str(DB["port"]),
                           "CONN_MAX_AGE": None}},
    USE_TZ=True,
    DEFAULT_AUTO_FIELD="django.db.models.AutoField",
)
django.setup()

from django.db import models  # noqa: E402  (after setup, as Django requires)
from django.shortcuts import render  # noqa: E402
from django.urls import path  # noqa: E402
from django.core.wsgi import get_wsgi_application  # noqa: E402


class Fortune(models.Model):
    message = models.TextField()

    class Meta:
        app_label = "bench"
        db_table = "fortune"
        managed = False


ADDED = "Additional fortune added at request time."


def fortunes(request):
    rows = list(Fortune.objects.all())
    rows.append(Fortune(id=0, message=ADDED))
    rows.sort(key=lambda f: f.message)
    return render(request, "fortunes.html", {"fortunes": rows})


urlpatterns = [path("fortunes/", fortunes)]

application = get_wsgi_application()
