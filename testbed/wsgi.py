"""WSGI entry point: `gunicorn testbed.wsgi`."""

import os

from django.core.wsgi import get_wsgi_application

from testbed import gctune

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "testbed.settings")
application = get_wsgi_application()
# Everything start-up made is now alive for good: out of the cyclic collector's walks.
gctune.tune()
