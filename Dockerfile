# dmp-fhir: the FHIR server image. Pinned base (exact version tag), dependencies installed from
# the hash-checked lock file (requirements.lock, `pip-compile --generate-hashes` of
# pyproject.toml), runs as an unprivileged user, reports its health.
FROM python:3.11.13-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    # The code runs from /app/src, next to profiles/ and samples/ (the server finds its
    # profiles and access matrix relative to the source tree, not in site-packages).
    PYTHONPATH=/app/src \
    DMP_FHIR_HOST=0.0.0.0 \
    DMP_FHIR_PORT=8080

WORKDIR /app
COPY requirements.lock ./
RUN pip install --require-hashes --no-deps -r requirements.lock

COPY pyproject.toml README.md ./
COPY src ./src
COPY profiles ./profiles
COPY samples ./samples

RUN groupadd --system --gid 10001 dmp \
    && useradd --system --uid 10001 --gid dmp --home-dir /app --no-create-home --shell /usr/sbin/nologin dmp
USER 10001:10001

EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=6 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/fhir/_health', timeout=4).status != 200)"]
# SIGTERM (docker stop) shuts the server down gracefully: in-flight requests finish, the audit
# writer flushes.
STOPSIGNAL SIGTERM
CMD ["python", "-m", "dmp_fhir", "serve"]
