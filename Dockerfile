# One image for the API, the Ray head and the Ray GPU workers. Tune pickles trials, callbacks and
# results between these processes, so all of them must run the same code on the same versions.
#
# The official Ray image for the pinned ray==2.60.0 on Python 3.11, CUDA build: Ray itself comes
# preinstalled and matches pyproject.toml, and its non-root user `ray` (uid 1000, group `users`)
# owns the Python environment, so pip runs without root.
FROM rayproject/ray:2.60.0-py311-gpu

# Where the service keeps its data inside the containers; compose mounts the shared results
# volume on /data/ray_results. Created as root (the only step that needs it) and handed to `ray`
# so that fresh named volumes mounted there inherit the ownership.
USER root
RUN mkdir -p /data/ray_results && chown -R ray:users /data
USER ray

ENV PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    RAY_USAGE_STATS_ENABLED=0 \
    SENSITIVITY_DATA_DIR=/data \
    SENSITIVITY_STORAGE_PATH=/data/ray_results

# The pins of pyproject.toml, in a layer of their own: torch is gigabytes and changes far less
# often than the code. PyPI's Linux wheels of torch are the CUDA builds (they bring their own CUDA
# runtime, so only the host's NVIDIA driver matters).
RUN pip install --no-cache-dir torch==2.14.1 torchvision==0.29.1

WORKDIR /home/ray/app
COPY --chown=ray:users pyproject.toml README.md ./
COPY --chown=ray:users optim ./optim
COPY --chown=ray:users studies ./studies
COPY --chown=ray:users workers ./workers
COPY --chown=ray:users service ./service
# A regular (not editable) install: Ray Jobs run `python -m workers.run` from another directory.
RUN pip install --no-cache-dir . \
    && python -c "import ray, torch, torchvision; \
assert ray.__version__ == '2.60.0', ray.__version__; \
assert torch.__version__.split('+')[0] == '2.14.1', torch.__version__; \
assert torchvision.__version__.split('+')[0] == '0.29.1', torchvision.__version__"

EXPOSE 8000 8265
# The API by default; compose gives the Ray head and workers their own `ray start` commands.
CMD ["uvicorn", "--factory", "service.app:create_app", "--host", "0.0.0.0", "--port", "8000"]
