# presence-gateway: one process per container; scale by running more behind a load balancer.
# Build stage: the project and its dependencies as wheels (compilers stay here).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY caches ./caches
COPY gateway ./gateway
# gateway/demo/sdk links here: the wheel carries the SDK the demo page loads.
COPY clients/js/src ./clients/js/src
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# Runtime stage: only the wheels installed, no build tools, a non-root user.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    GATEWAY_HOST=0.0.0.0 GATEWAY_PORT=8080 GATEWAY_STORE=/data/presence-gateway.sqlite3 \
    GATEWAY_LOG_FORMAT=json
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index /wheels/*.whl && rm -rf /wheels \
    && useradd --system --uid 10001 gateway && mkdir -p /data && chown gateway /data
USER gateway
WORKDIR /data
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"]
# The exec form: the gateway is PID 1 and gets SIGTERM itself (it drains, then exits).
STOPSIGNAL SIGTERM
ENTRYPOINT ["presence-gateway", "serve"]
