# One image for every service: `medins worker <service>` picks which one runs.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
RUN pip install --no-cache-dir .
ENV MEDINS_DEV_TIMEOUTS=false MEDINS_LOG_FORMAT=json MEDINS_WEB_HOST=0.0.0.0
USER nobody
ENTRYPOINT ["medins"]
