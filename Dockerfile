# The hub image: every `hub` process of compose.yaml (topology, worker, simulator, tracker, replies)
# runs from it. Slim Python 3.11, the project installed with `pip install .` (no test extras), a
# non-root user, and /srv/hub mirroring the repository layout so that examples/stack.toml's relative
# paths (../var/stack/...) resolve alike in the container and on the host.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

COPY . /tmp/src
RUN pip install /tmp/src \
    && rm -rf /tmp/src \
    && groupadd --system --gid 10001 hub \
    && useradd --system --uid 10001 --gid hub --home-dir /srv/hub --shell /usr/sbin/nologin hub \
    && mkdir -p /srv/hub/examples /srv/hub/var/stack/data /srv/hub/var/stack/pki /srv/hub/var/stack/secrets \
    && chown -R hub:hub /srv/hub/var

USER 10001:10001
WORKDIR /srv/hub
ENV HUB_CONFIG=/srv/hub/examples/stack.toml \
    HUB_HEALTH_PORT=9400

# Liveness of a process with an HTTP port (worker, replies: /healthz on HUB_HEALTH_PORT); compose.yaml
# gives each service its own probe (simulator /_sim/health, tracker 9410) and disables it for the
# run-once topology job.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('HUB_HEALTH_PORT', '9400') + '/healthz', timeout=4)"]

ENTRYPOINT ["hub"]
CMD ["--help"]
