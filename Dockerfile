# latentcast: the API and the retrain scheduler run from this one image.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    LATENTCAST_ARTIFACTS=/artifacts

WORKDIR /app

# A C++ compiler for training's fused GRU (models/fused_gru.py), built once below: the scheduler's retrains run it.
RUN apt-get update \
    && apt-get install -y --no-install-recommends g++ \
    && rm -rf /var/lib/apt/lists/*

# The CPU build of torch first, from PyTorch's CPU index: the default index would pull CUDA (several GB).
COPY constraints.txt ./
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0

COPY pyproject.toml README.md NOTICE LICENSE ./
COPY data ./data
COPY models ./models
COPY training ./training
COPY service ./service
# the Python client, a distribution of its own that the package depends on (`latentcast replay` runs it)
COPY clients/python ./clients/python
RUN pip install -c constraints.txt ./clients/python .

RUN useradd --create-home --uid 10001 latentcast \
    && mkdir -p /artifacts \
    && chown latentcast:latentcast /artifacts
USER latentcast
# into torch's extension cache in this user's home; where it cannot build, training runs nn.GRU
RUN python -m models.fused_gru
VOLUME ["/artifacts"]
EXPOSE 8000

HEALTHCHECK --interval=15s --timeout=3s --start-period=300s --retries=3 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"

CMD ["latentcast", "serve", "--host", "0.0.0.0", "--port", "8000"]
