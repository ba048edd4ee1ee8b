# An image that serves one exported, validated model folder with `edgeport serve`
# (README.md, "Scale-out: Docker, Kubernetes, KServe"). From the repository root:
#
#   docker build -t edgeport-serve:gender-vit .
#   docker run --rm -p 8080:8080 edgeport-serve:gender-vit
#
# At the repository root, not under deploy/: the build context has to be the root anyway (the
# lock, pyproject.toml, the packages and artifacts/ live there), and Docker reads .dockerignore
# from the context's root, so both files sit where `docker build .` finds them.
#
# Another model: --build-arg MODEL_NAME=NAME (MODEL_DIR defaults to artifacts/NAME), add
# `!artifacts/NAME/` to .dockerignore (it lets in one model folder only), and give /models/NAME
# as the first argument (`docker run IMAGE /models/NAME --host 0.0.0.0 --port 8080 --threads 2`,
# or the manifests' args). The folder must have been validated: the server refuses a variant
# without a passing row in report.json, or whose file no longer has the manifest's sha256.
#
# tests/test_deploy_manifests.py checks this file statically (the CMD parses with edgeport's own
# argparse parser, the port, what is copied); nothing here could build it (no Docker engine).
FROM python:3.11-slim

ARG MODEL_NAME=gender-vit
ARG MODEL_DIR=artifacts/${MODEL_NAME}

# HF_HUB_OFFLINE: the model is in the image, so a server has no reason to reach the Hub, and must
# not stall its start on one that is unreachable.
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1

WORKDIR /opt/edgeport

# `edgeport[serve]` only, with pip's own resolver: the HTTP stack, ONNX Runtime and LiteRT's
# interpreter; no torch, transformers or TensorFlow (serving preprocesses from the steps the
# manifest recorded). The lock as constraints pins every package that pulls in to the tested set
# (tests/test_deploy_manifests.py checks that it names them all). To serve an OpenVINO variant,
# install ".[serve-openvino]" instead. The code is copied before the install (pip builds the
# project from it), so a code change reinstalls the wheels: about 13 s, not worth a second layer.
# README.md is here because pyproject.toml names it as the readme. The folders pyproject.toml
# installs as edgeport.*, and nothing else of the repository: serving reads no config file when
# --threads is given, and never the evaluation images (report.json is enough).
COPY requirements.lock pyproject.toml README.md ./
COPY edgeport ./edgeport
COPY converters ./converters
COPY runtimes ./runtimes
COPY validation ./validation
COPY serving ./serving
COPY distillation ./distillation
RUN python -m pip install --upgrade pip==25.3 \
 && python -m pip install -c requirements.lock ".[serve]" \
 && rm -rf build ./*.egg-info

# Numeric, so that Kubernetes' runAsNonRoot can verify it (it cannot check a user name). No home:
# serving writes nothing under $HOME (checked on gender-vit: start, 11 requests, SIGTERM).
RUN groupadd --system --gid 10001 edgeport \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin edgeport

# Owned by root and only readable by the server: it serves what was validated, and cannot change it.
# The whole folder (every variant), so that --variant can pick another without a rebuild;
# .dockerignore leaves out its mobile/ hand-off bundle, which only repeats the .tflite files.
COPY ${MODEL_DIR} /models/${MODEL_NAME}

USER 10001:10001
EXPOSE 8080

# Exec form: edgeport is PID 1 and gets SIGTERM itself; uvicorn handles it (stop accepting, finish
# the requests in flight, exit), so no init process is needed for the drain.
ENTRYPOINT ["edgeport", "serve"]
# --threads explicitly: without it edgeport reads edgeport.toml, which the image does not have.
# Keep it equal to the CPUs the container gets (the manifests' CPU limit). --max-uploads x
# --max-body-mb bounds the memory bodies in flight take (256 MiB, within the manifests' 1 GiB).
CMD ["/models/gender-vit", "--host", "0.0.0.0", "--port", "8080", "--threads", "2", "--max-uploads", "32", "--max-body-mb", "8"]
