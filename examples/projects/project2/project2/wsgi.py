"""WSGI entry point of project2, as "django-admin startproject" writes it."""
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project2.settings")

application = get_wsgi_application()
