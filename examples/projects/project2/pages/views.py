import sys

from django.conf import settings
from django.http import HttpResponse


def home(request):
    """Which project answers, with which settings, from which interpreter."""
    return HttpResponse(
        "%s: settings %s, script name %s, path %s, application group %r, django modules %d\n"
        % (settings.PROJECT_TITLE, settings.SETTINGS_MODULE, request.META.get("SCRIPT_NAME"),
           request.path, request.META.get("wsgid.application_group"),
           sum(1 for m in sys.modules if m.startswith("django"))),
        content_type="text/plain")
