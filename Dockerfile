# One image for every role: `framebroker <command>` is the entry point.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY framebroker ./framebroker
COPY broker ./broker
COPY producers ./producers
COPY consumers ./consumers
RUN pip install --no-cache-dir . && useradd --create-home framebroker && mkdir /data \
    && chown framebroker /data
USER framebroker
ENTRYPOINT ["framebroker"]
CMD ["--help"]
