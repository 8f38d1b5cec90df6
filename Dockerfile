# syntax=docker/dockerfile:1
# One image for both roles: the default CMD runs the server; the uploader runs
# the same image with `python -m client run` (see docker-compose.yml).

# --- build stage: dependencies go into a venv that is copied on its own, so
# pip's caches and any build tooling added here never reach the final image.
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
COPY requirements-runtime.txt /tmp/requirements-runtime.txt
RUN /opt/venv/bin/pip install --no-cache-dir -r /tmp/requirements-runtime.txt

# --- runtime stage
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    LOTTERY_DATA_DIR=/srv/data \
    GUNICORN_CMD_ARGS="--bind 0.0.0.0:8000"

# Fixed uid/gid so host-side ownership (volumes, secrets) is predictable.
# /srv/data is created and chowned before VOLUME: a new named volume is seeded
# from the image, so it starts out writable by this user.
RUN groupadd --system --gid 10001 lottery \
 && useradd --system --uid 10001 --gid 10001 --home-dir /srv --no-create-home \
        --shell /usr/sbin/nologin lottery \
 && mkdir -p /srv/data \
 && chown 10001:10001 /srv/data

COPY --from=build /opt/venv /opt/venv
WORKDIR /srv
# Code stays root-owned (read-only for the service user). Only what runs is
# copied: agency data and secrets are mounted at run time, never baked in.
COPY app/ ./app/
COPY client/ ./client/
COPY tlog/ ./tlog/
COPY gunicorn.conf.py ./

USER 10001:10001
VOLUME ["/srv/data"]
EXPOSE 8000
# No HEALTHCHECK here: the uploader containers share this image and serve
# nothing. The server's healthcheck lives in docker-compose.yml.
CMD ["gunicorn", "-c", "gunicorn.conf.py"]
