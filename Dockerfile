# Production image: gunicorn web, Celery worker and beat all run from it (see docker-compose.yml).
FROM node:20-slim AS frontend
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY requirements.txt constraints.txt ./
RUN pip install -r requirements.txt -c constraints.txt
COPY --from=frontend /src/node_modules ./node_modules
COPY . .
RUN DJANGO_DEBUG=1 python manage.py collectstatic --noinput -v0 \
    && useradd --system --uid 1000 app && mkdir -p /data/media /data/artefacts && chown -R app /data
USER app
EXPOSE 8000
CMD ["gunicorn", "config.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3", "--timeout", "120"]
