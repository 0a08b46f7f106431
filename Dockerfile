# One image for every service: `medins worker <service>` picks which one runs.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md requirements.lock ./
# Runtime dependencies only, exactly as locked (hashes checked); the development stack (the
# `dev` extra: embedded broker, database, mail server) is not in the image.
RUN pip install --no-cache-dir --require-hashes -r requirements.lock
COPY shared ./shared
COPY services ./services
RUN pip install --no-cache-dir --no-deps . \
    && useradd --system --uid 10001 --home-dir /var/lib/medins --shell /usr/sbin/nologin medins \
    && mkdir -p /var/lib/medins && chown medins:medins /var/lib/medins
# The code stays root-owned and read-only to the worker; its only writable place is the state
# volume (Faust's data dir).
ENV MEDINS_DEV_TIMEOUTS=false MEDINS_LOG_FORMAT=json MEDINS_WEB_HOST=0.0.0.0 \
    MEDINS_STATE_DIR=/var/lib/medins PYTHONDONTWRITEBYTECODE=1
VOLUME ["/var/lib/medins"]
USER medins
# Readiness (database, broker, partitions assigned); /health is the liveness probe.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('MEDINS_WEB_PORT', '6066') + '/ready', timeout=4)"
ENTRYPOINT ["medins"]
