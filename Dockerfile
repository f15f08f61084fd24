# detsim image: CPU by default; CUDA through build arguments (PyTorch's CUDA wheels bring their own CUDA
# libraries, the host's NVIDIA driver comes in through the NVIDIA container toolkit):
#   docker build -t detsim .
#   docker build -t detsim:cu128 --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 .
#   docker run --rm -v "$PWD:/work" detsim simulate n=1000 out=/work/showers.h5
#   docker run --rm --gpus all -v "$PWD:/work" detsim:cu128 train experiment=calo_vae_ds1_photons data.path=/work/showers.h5
# Versions: requirements.lock (make lock); torch is pinned here by TORCH_VERSION.
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DETSIM_CONFIG_DIR=/opt/detsim/conf \
    DETSIM_ROOT=/work \
    MPLCONFIGDIR=/tmp/matplotlib

WORKDIR /opt/detsim
COPY requirements.lock pyproject.toml README.md ./
COPY docker/install.sh docker/entrypoint.sh docker/
COPY src ./src
COPY conf ./conf
RUN TORCH_VERSION="${TORCH_VERSION}" TORCH_INDEX_URL="${TORCH_INDEX_URL}" sh docker/install.sh python /opt/detsim \
    && groupadd --gid 10001 detsim && useradd --create-home --uid 10001 --gid 10001 --shell /usr/sbin/nologin detsim \
    && mkdir -p /work && chown 10001:10001 /work

USER 10001:10001
WORKDIR /work
ENTRYPOINT ["/opt/detsim/docker/entrypoint.sh"]
CMD ["train", "--help"]
