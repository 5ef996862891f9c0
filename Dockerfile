FROM python:3.11-slim-bookworm
RUN apt-get update && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY identity identity
COPY cli cli
COPY migrations migrations
# Point PIP_EXTRA_INDEX_URL at an index of CPU torch wheels to avoid the multi-GB CUDA build.
ARG PIP_EXTRA_INDEX_URL=""
RUN pip install --no-cache-dir .
EXPOSE 8000
ENTRYPOINT []
CMD ["identity", "--help"]
