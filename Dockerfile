# presence-gateway: one process per container; scale by running more behind a load balancer.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    GATEWAY_HOST=0.0.0.0 GATEWAY_PORT=8080 GATEWAY_STORE=/data/presence-gateway.sqlite3

WORKDIR /app
COPY pyproject.toml README.md ./
COPY caches ./caches
COPY gateway ./gateway
RUN pip install --no-cache-dir . && useradd --system --uid 10001 gateway \
    && mkdir -p /data && chown gateway /data

USER gateway
WORKDIR /data
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)" || exit 1
STOPSIGNAL SIGTERM
ENTRYPOINT ["presence-gateway", "serve"]
