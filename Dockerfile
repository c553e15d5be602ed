# Nexus AI: one image for every part of a deployment — the app (`streamlit run app.py`, the
# default command), `nexus worker` and the one-shot `nexus init`. See README "Deploying".
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    NEXUS_DATA_DIR=/data

WORKDIR /app
RUN useradd --system --uid 10001 --user-group --home-dir /app --shell /usr/sbin/nologin nexus \
    && mkdir -p /data && chown nexus:nexus /data

COPY pyproject.toml README.md ./
COPY nexus_core ./nexus_core
# Editable: `nexus init` finds alembic.ini and migrations/ beside nexus_core (a plain
# `pip install .` copies nexus_core into site-packages, away from them).
RUN pip install -e .

COPY alembic.ini app.py ./
COPY migrations ./migrations
COPY app_pages ./app_pages
COPY .streamlit/config.toml ./.streamlit/config.toml

USER nexus
VOLUME ["/data"]
EXPOSE 8501

# GET /health: 200 when every configured check passes, else 503 (urlopen raises on a 503).
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8501/health', timeout=8)"]

CMD ["streamlit", "run", "app.py", "--server.port=8501", "--server.address=0.0.0.0"]
