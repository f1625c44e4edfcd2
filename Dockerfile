# pd-scaler: KEDA external scaler for prefill/decode disaggregated LLM serving.
#   docker build -t <registry>/pd-scaler:0.1.0 .
#   docker run --rm -p 9090:9090 -p 8080:8080 <registry>/pd-scaler:0.1.0
# Configured through PD_SCALER_* env vars (see README); the Helm chart in deploy/helm/pd-scaler sets them.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

# Only what the package build needs (pyproject.toml names README.md as the long description).
WORKDIR /src
COPY pyproject.toml README.md ./
COPY scaler ./scaler
RUN pip install --no-cache-dir . \
    && rm -rf /src

# A numeric non-root user, so Kubernetes' runAsNonRoot can verify it without a passwd lookup.
USER 65532:65532
WORKDIR /

EXPOSE 9090 8080
ENTRYPOINT ["pd-scaler"]
CMD ["serve"]
