# The provider's image: a wheel built in one stage, installed (not editable) into a virtualenv
# that the final stage copies, run as a non-root user. The same image serves every role of the
# compose stack (docker-compose.yml): gunicorn (the default command), `idp worker`, `idp db
# upgrade`, the demo portal, and the one-shots of deploy/docker/.
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY idp ./idp
COPY relying_party_demo ./relying_party_demo
RUN python -m pip wheel --no-deps --wheel-dir /wheels . \
    && python -m venv /opt/idp \
    && /opt/idp/bin/pip install /wheels/school_idp-*.whl

FROM ${PYTHON_IMAGE}
ENV PATH=/opt/idp/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    IDP_KEYS_DIR=/keys
# One unprivileged user owns what the processes write: the signing keys (a volume shared by
# every instance), the instance folders Flask puts under the virtualenv's var/, the demo
# portal's database, and the one-shots' outputs.
RUN useradd --system --uid 10001 --user-group --create-home --home-dir /home/idp idp \
    && mkdir -p /keys /data /ca /ca-key /portal-settings /opt/idp/var \
    && chown idp:idp /keys /data /ca /ca-key /portal-settings
COPY --from=build /opt/idp /opt/idp
RUN chown idp:idp /opt/idp/var
COPY deploy/docker/entrypoint.sh /usr/local/bin/idp-entrypoint
COPY deploy/docker/demo-portal-seed.sh /usr/local/bin/demo-portal-seed
COPY deploy/docker/demo-portal.sh /usr/local/bin/demo-portal
COPY deploy/docker/local-ca.sh /usr/local/bin/local-ca
# Numeric, so Kubernetes can check runAsNonRoot without reading /etc/passwd.
USER 10001:10001
WORKDIR /home/idp
EXPOSE 8000
# Liveness of the default command (gunicorn on 8000); readiness is /readyz, which the compose
# file and the Kubernetes manifests check. The worker and the one-shots set their own.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
ENTRYPOINT ["idp-entrypoint"]
# idp.gunicorn_conf: JSON logs (one line per request, from the app), metrics across the workers.
# No control socket: one gunicorn per container, and the root file system may be read-only.
CMD ["gunicorn", "idp:create_app()", "--config=python:idp.gunicorn_conf", "--bind=0.0.0.0:8000", \
     "--workers=2", "--threads=4", "--graceful-timeout=20", "--no-control-socket"]
