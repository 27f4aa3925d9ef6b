# syntax=docker/dockerfile:1
# One image for every production process: docker-compose.yml picks gunicorn (web), the Celery
# worker, Celery beat or the one-shot migrate job by command.
#
# The processes run from the source tree at /app (PYTHONPATH), not from site-packages: the
# templates, seed data and locale files are read from beside the code and are not package data.
# The portal's front-end packages (htmx) from the npm registry, served locally by the app.
FROM node:20-slim AS assets
WORKDIR /assets
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONPATH=/app \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_SETTINGS_MODULE=testbed.settings \
    STATIC_ROOT=/app/staticfiles \
    TESTBED_VAR_DIR=/app/var

RUN groupadd --system --gid 10001 testbed \
 && useradd --system --uid 10001 --gid testbed --home-dir /app --no-create-home \
      --shell /usr/sbin/nologin testbed

WORKDIR /app

# Dependencies first, in their own layer: a code change does not reinstall them.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
      > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt

COPY . .
COPY --from=assets /assets/node_modules/htmx.org/dist /app/node_modules/htmx.org/dist

# collectstatic imports the settings, which refuse DEBUG=0 without a secret and host names:
# give it throwaway values that exist only in this one build step (never in the image).
RUN pip install --no-deps . \
 && rm -rf build ./*.egg-info \
 && DEBUG=0 \
    SECRET_KEY=build-time-only-placeholder-not-a-secret-0000 \
    ALLOWED_HOSTS=build.invalid \
    DATABASE_URL=sqlite:////tmp/build/db.sqlite3 \
    TESTBED_VAR_DIR=/tmp/build \
    CELERY_BROKER_URL=memory:// \
    python manage.py collectstatic --noinput \
 && rm -rf /tmp/build \
 && mkdir -p /app/var \
 && chown testbed:testbed /app/var

# The code and static files stay owned by root: the app user can read them, not change them.
USER testbed

EXPOSE 8000

# Threads, not processes, carry the `Prefer: wait=N` long-polls (see ARCHITECTURE.md).
CMD ["gunicorn", "testbed.wsgi", "--bind", "0.0.0.0:8000", "--worker-class", "gthread", "--workers", "2", "--threads", "16", "--timeout", "120", "--limit-request-line", "8190", "--access-logfile", "-"]
