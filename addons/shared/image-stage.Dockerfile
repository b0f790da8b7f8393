FROM ${BUILD_FROM}
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ARG BUILD_ARCH
ARG BUILD_VERSION

ENV PATH="/opt/venv/bin:${PATH}" \
    LOCAL_VOICE_FETCH_MARKER=/run/local_voice/fetching

# The start period covers a server loading its model; while a model downloads, the
# marker above keeps the check healthy.
HEALTHCHECK --interval=30s --timeout=10s --start-period=15m --retries=3 \
    CMD ["/usr/local/bin/healthcheck"]

LABEL \
    io.hass.type="addon" \
    io.hass.arch="${BUILD_ARCH}" \
    io.hass.version="${BUILD_VERSION}"
