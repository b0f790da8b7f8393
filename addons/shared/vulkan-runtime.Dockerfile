# Vulkan's loader and Mesa's GPU drivers. Mesa's software driver (lavapipe) stays in
# the image unregistered (its ICD file removed): without a GPU, ggml's own CPU code
# runs, which is faster than an emulated GPU. DOCS.md says how the smoke uses it.
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        libgomp1 \
        libvulkan1 \
        mesa-vulkan-drivers \
    && rm -f /usr/share/vulkan/icd.d/lvp_icd.*.json \
    && rm -rf /var/lib/apt/lists/*
