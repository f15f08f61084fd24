# detsim image: CPU by default; CUDA through build arguments (PyTorch's CUDA wheels bring their own CUDA
# libraries, the host's NVIDIA driver comes in through the NVIDIA container toolkit):
#   docker build -t detsim .
#   docker build -t detsim:cu128 --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 .
#   docker run --rm --user "$(id -u):$(id -g)" -v "$PWD:/work" detsim simulate n=1000 out=/work/showers.h5
#   docker run --rm --gpus all --user "$(id -u):$(id -g)" -v "$PWD:/work" detsim:cu128 train data.path=/work/showers.h5
# `--user` runs as you, so files in the mounted folder are yours and writable (the default user, uid 10001,
# cannot write a folder it does not own); docker/entrypoint.sh gives any user a writable HOME.
# Versions: requirements.lock (make lock: detsim[gw], CPU torch, no CUDA wheels); torch pinned by TORCH_VERSION.
# HPC sites without Docker: Apptainer.def builds the same image for Apptainer.
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DETSIM_CONFIG_DIR=/opt/detsim/conf \
    DETSIM_ROOT=/work

WORKDIR /opt/detsim
COPY requirements.lock pyproject.toml README.md ./
COPY docker/install.sh docker/entrypoint.sh docker/
COPY src ./src
COPY conf ./conf
RUN TORCH_VERSION="${TORCH_VERSION}" TORCH_INDEX_URL="${TORCH_INDEX_URL}" sh docker/install.sh python /opt/detsim \
    && groupadd --gid 10001 detsim && useradd --create-home --uid 10001 --gid 10001 --shell /usr/sbin/nologin detsim \
    && mkdir -p /work && chown 10001:10001 /work && chmod 1777 /work

USER 10001:10001
WORKDIR /work
ENTRYPOINT ["/opt/detsim/docker/entrypoint.sh"]
CMD ["train", "--help"]
