# The reconcile image: registry.example.com/reconcile:0.1.0 in deploy/ (compose, Kubernetes).
#   docker build -t registry.example.com/reconcile:0.1.0 .
# Dependencies come from requirements.lock (scripts/write-lock.py), then the wheel built from
# this tree is installed without resolving anything else. Runs as an unprivileged user.
FROM python:3.12-slim AS build
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY reconcile ./reconcile
RUN pip install --no-cache-dir "setuptools>=77" \
 && pip wheel --no-cache-dir --no-deps --no-build-isolation -w /dist .

FROM python:3.12-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN groupadd --system --gid 10001 reconcile \
 && useradd --system --uid 10001 --gid reconcile --home-dir /srv/reconcile --create-home reconcile
COPY requirements.lock /tmp/requirements.lock
RUN pip install --no-cache-dir -r /tmp/requirements.lock \
 && rm /tmp/requirements.lock
COPY --from=build /dist/ /tmp/dist/
RUN pip install --no-cache-dir --no-deps /tmp/dist/*.whl \
 && rm -rf /tmp/dist
USER 10001:10001
WORKDIR /srv/reconcile
EXPOSE 8787
ENTRYPOINT ["reconcile"]
CMD ["--help"]
