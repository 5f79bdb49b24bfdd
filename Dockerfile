# syntax=docker/dockerfile:1
# The gateway's image: `fanout serve`, `fanout relay`, `fanout migrate` and the rest of the CLI.

FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY gateway ./gateway
COPY adapters ./adapters
RUN python -m venv /opt/fanout && /opt/fanout/bin/pip install ".[loadtest]"

FROM python:3.11-slim-bookworm
# pyproject.toml's version, which the compose file passes on from $FANOUT_VERSION.
ARG FANOUT_VERSION=unknown
LABEL org.opencontainers.image.title="fanout-gateway" \
      org.opencontainers.image.description="Polyglot persistence fan-out gateway: a PostgreSQL outbox relayed to MongoDB, Redis, Elasticsearch, InfluxDB and Kafka" \
      org.opencontainers.image.version="$FANOUT_VERSION" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin fanout
COPY --from=build /opt/fanout /opt/fanout
WORKDIR /app
COPY config/compose.yaml config/compose.yaml
ENV PATH=/opt/fanout/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MPLCONFIGDIR=/tmp/matplotlib \
    FANOUT_CONFIG=/app/config/compose.yaml
USER 10001
EXPOSE 8000
ENTRYPOINT ["fanout"]
CMD ["serve"]
