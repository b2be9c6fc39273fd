# The provider image: the project installed editable (migrations/ sits beside idp/).
FROM python:3.11-slim
WORKDIR /app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY pyproject.toml README.md ./
COPY idp ./idp
COPY migrations ./migrations
RUN pip install --no-cache-dir -e . && useradd --create-home idp && mkdir -p /app/instance /keys \
    && chown idp /app/instance /keys
USER idp
EXPOSE 8000
CMD ["sh", "-c", "idp db upgrade && exec gunicorn 'idp:create_app()' --workers ${WEB_CONCURRENCY:-2} --bind 0.0.0.0:8000"]
