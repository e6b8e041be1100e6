# hpa-exp as an image: `hpa-exp run` inside the cluster (manifests/in-cluster/hpa-exp-job.yaml)
# and any other command in pipelines.  Two stages: the wheel is built in the first, the final
# image holds only Python, the installed wheel and the shipped configs, and runs as a non-root user.
#
#   docker build -t registry.example.com/hpa-exp:0.1.0 .
#   docker push registry.example.com/hpa-exp:0.1.0
#
# (No container engine is available where hpa-exp is developed: tests/test_dockerfile.py lints
# this file with Docker's own parser and checks the rules above, but the image is not built there.)

ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
RUN python -m pip install --no-cache-dir build==1.2.2.post1
COPY pyproject.toml README.md ./
COPY hpa_experiments ./hpa_experiments
RUN python -m build --wheel --outdir /dist

FROM ${PYTHON_IMAGE} AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN groupadd --gid 10001 hpa-exp \
    && useradd --uid 10001 --gid 10001 --home-dir /app --create-home --shell /usr/sbin/nologin hpa-exp
COPY --from=build /dist/ /tmp/dist/
RUN python -m pip install --no-cache-dir /tmp/dist/*.whl && rm -rf /tmp/dist
WORKDIR /app
# The shipped experiment configs resolve ../workloads and ../manifests from here, as in a checkout.
COPY --chown=10001:10001 workloads ./workloads
COPY --chown=10001:10001 manifests ./manifests
COPY --chown=10001:10001 experiment-configs ./experiment-configs
RUN mkdir -p /app/experiment-data && chown 10001:10001 /app/experiment-data
USER 10001:10001
ENTRYPOINT ["hpa-exp"]
CMD ["--help"]
