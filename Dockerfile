# syntax=docker/dockerfile:1
# Fido's container image: docs/deployment.md explains how to run it.
#   docker build -t fido .
#   docker run --env-file .env -e FIDO_HTTP_HOST=0.0.0.0 -p 8080:8080 fido
# Two stages: the first builds a virtual environment from the source, the second copies
# only that environment onto a slim Python, so the image holds no compiler, pip cache or
# source tree, and runs as an unprivileged user.

FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/fido
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY pipeline ./pipeline
COPY integrations ./integrations
RUN /opt/fido/bin/pip install . \
 && find /opt/fido -name '__pycache__' -prune -exec rm -rf {} +

FROM python:3.11-slim-bookworm
LABEL org.opencontainers.image.title="fido" \
      org.opencontainers.image.description="Automated security-incident responder that lives in Slack" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 fido \
 && useradd --system --uid 10001 --gid fido --home-dir /var/lib/fido --shell /usr/sbin/nologin fido \
 && mkdir -p /var/lib/fido /etc/fido \
 && chown fido:fido /var/lib/fido
COPY --from=build /opt/fido /opt/fido
# listen on every interface inside the container; the policy file is mounted at /etc/fido
ENV PATH=/opt/fido/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    FIDO_HTTP_HOST=0.0.0.0 \
    FIDO_HTTP_PORT=8080 \
    FIDO_LOG_FORMAT=json \
    FIDO_DATABASE_URL=sqlite:////var/lib/fido/fido.db
WORKDIR /var/lib/fido
VOLUME ["/var/lib/fido"]
USER fido:fido
EXPOSE 8080
# alive: the process answers (GET /healthz); orchestrators route traffic on GET /readyz
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4).status != 200)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["fido"]
CMD ["serve"]
