"""Settings of project1: a minimal Django project with the admin, sessions and CSRF."""
import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("PROJECT1_SECRET_KEY", "example-only-project1-not-secret")
DEBUG = False
ALLOWED_HOSTS = ["*"]
PROJECT_TITLE = "Project 1"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "pages",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "project1.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "project1.wsgi.application"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("PROJECT1_DB", str(BASE_DIR / "db.sqlite3")),
    }
}

# Two projects under one host name: cookies of their own, so that one's login does not
# overwrite the other's.
SESSION_COOKIE_NAME = "project1_sessionid"
CSRF_COOKIE_NAME = "project1_csrftoken"

DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
USE_TZ = True
# Django sets the process's TZ from TIME_ZONE (one per process, whatever the interpreter):
# keep every project of a process on the same one.
TIME_ZONE = "UTC"
STATIC_URL = "/static/"
