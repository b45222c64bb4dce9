# One image for every role: `framebroker <command>`, configured by FRAMEBROKER_* variables.
#   docker build -t framebroker:local .
#   docker run --init -p 5555:5555 -p 5556:5556 -p 5558:5558 -p 5560:5560 framebroker:local broker
# compose.yaml runs a whole cluster from it. Commands exit 0 on SIGTERM (`docker stop`);
# run with --init (compose: `init: true`) so PID 1 also reaps the consumers' workers.
# The runtime dependencies, listed from pyproject.toml in a throwaway stage: the install
# layer below (the big download) is keyed on this list alone and stays cached until the
# dependencies change, whatever else changes in pyproject.toml or the code.
FROM python:3.11-slim AS requirements
COPY pyproject.toml /tmp/
RUN python3 -c "import tomllib; print(*tomllib.load(open('/tmp/pyproject.toml', 'rb'))['project']['dependencies'], sep='\n')" \
        > /tmp/requirements.txt

FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore \
    FRAMEBROKER_METRICS_PORT=9100
WORKDIR /app
COPY --from=requirements /tmp/requirements.txt /tmp/
RUN pip install -r /tmp/requirements.txt 'setuptools>=68' wheel && rm /tmp/requirements.txt

# The sample video the `sample` producer plays: generated here, nothing downloaded.
COPY docker/make_sample_video.py /usr/local/share/framebroker/
RUN python3 /usr/local/share/framebroker/make_sample_video.py \
        /usr/local/share/framebroker/sample.avi 320x240 15 8

COPY docker/healthcheck.py /usr/local/bin/framebroker-healthcheck
COPY pyproject.toml README.md ./
COPY framebroker ./framebroker
COPY broker ./broker
COPY producers ./producers
COPY consumers ./consumers
COPY sink ./sink
COPY apps ./apps
RUN pip install --no-deps --no-build-isolation . \
    && rm -rf build ./*.egg-info \
    && chmod 0755 /usr/local/bin/framebroker-healthcheck \
    && useradd --create-home --uid 1000 framebroker \
    && mkdir /data /keys && chown framebroker: /data /keys

# Not root; /data is where the sink keeps its database (a volume in compose.yaml), /keys
# where compose.secure.yaml keeps CURVE keys (a volume written by its keygen service).
USER framebroker
WORKDIR /data

# Asks the running service itself (docker/healthcheck.py):
# broker: its control port answers; sink: listening, database readable; producer: the broker
# lists its stream as live; consumer: connected to the broker and the sink.
HEALTHCHECK --interval=5s --timeout=5s --start-period=30s --retries=3 \
    CMD ["framebroker-healthcheck"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["framebroker"]
CMD ["--help"]
