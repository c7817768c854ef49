"""The public images the Web UI stack runs, pinned by tag and digest: nothing to build.

Neither registry is reachable from gpuctl's development machines, so these digests were not
pulled here; each is the multi-arch index digest that several independent public projects pin
for the same tag, with the record of how they read it from the registry:

- vLLM v0.31.0 (OpenAI-compatible server, Docker Hub `vllm/vllm-openai`): the manifest LIST
  digest pinned, with a verification record (the list's body fetched from the registry, its
  sha256 equal to the digest; linux/amd64 entry sha256:a4a4c043...c3a6b), in public READMEs,
  Dockerfiles and tests of several projects dated 2026-10-04..10 (found with gpuctl's code
  search for "vllm-openai:v0.31.0@sha256"). vLLM 0.33.0 is on PyPI; no pinned digest of its
  image was found, so 0.31.0 it is.
- Open WebUI v0.11.4 (`ghcr.io/open-webui/open-webui`): the digest several public compose
  files, Terraform modules and Nix configs pin for v0.11.4, one recording it "from the GHCR
  manifest API (ghcr.io/v2/.../manifests/v0.11.4) with an anonymous bearer token" (2026-10-01).
  Open WebUI 0.12.4 is on PyPI; no pinned digest of its image was found.

The Open WebUI settings gpuctl relies on (WEBUI_AUTH, WEBUI_SECRET_KEY, WEBUI_ADMIN_EMAIL /
_PASSWORD / _NAME, ENABLE_SIGNUP, OPENAI_API_BASE_URL, ENABLE_OLLAMA_API, OFFLINE_MODE, HOST,
PORT) are read in open_webui/env.py and config.py and listed in its docs
(https://docs.openwebui.com/reference/env-configuration/); the admin account is created at
start-up from WEBUI_ADMIN_* only while the database has no user (env.py "Admin Account Runtime
Creation", utils/auth.py create_admin_user; checked in the 0.12.4 wheel). The image runs
backend/start.sh, which reads HOST and PORT.
"""

from __future__ import annotations

VLLM_IMAGE = ("docker.io/vllm/vllm-openai:v0.31.0"
              "@sha256:c1c9f6fd5c109ba7f0546a59f5b2f15fb87f64c77782e90a27b648b42a8e67c3")
OPEN_WEBUI_IMAGE = ("ghcr.io/open-webui/open-webui:v0.11.4"
                    "@sha256:9591b13f13843c7721c2b8eaf7382846c81b3ffe126526d1888d1fed50c6a33f")
# The in-pod helpers (token proxy, waker: Python standard library only) run in the Open WebUI
# image, whose base is Debian's python:3.11-slim: no third image to pull.
HELPER_IMAGE = OPEN_WEBUI_IMAGE
PINNED = {"model server": VLLM_IMAGE, "chat UI": OPEN_WEBUI_IMAGE}


def is_pinned(ref: str) -> bool:
    """A reference with a sha256 digest: what the cluster pulls cannot change under it."""
    name, _, digest = ref.partition("@")
    return digest.startswith("sha256:") and len(digest) == len("sha256:") + 64
