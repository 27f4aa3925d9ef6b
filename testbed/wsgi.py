"""WSGI entry point: `gunicorn testbed.wsgi`."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "testbed.settings")
application = get_wsgi_application()
