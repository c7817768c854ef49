"""Which folders become which import packages; everything else is in pyproject.toml.

The design keeps Kubernetes manifests in `k8s/` and the training image's recipe in `images/` at the
top of the repository; the wheel carries them as the data packages `gpuctl_k8s` (which the
installed program finds with importlib.resources, never through a checkout's paths) and
`gpuctl_images` (the recipe, read by nothing at run time).
"""

from setuptools import find_packages, setup

setup(
    packages=(find_packages("orchestrator", include=["gpuctl*"])
              + find_packages("infra", include=["gpuctl_infra*"])
              + ["gpuctl_k8s", "gpuctl_images"]),
    package_dir={"gpuctl": "orchestrator/gpuctl", "gpuctl_infra": "infra/gpuctl_infra",
                 "gpuctl_k8s": "k8s", "gpuctl_images": "images"},
    package_data={
        "gpuctl": ["data/*.toml", "data/*.json", "**/*.sh"],
        "gpuctl_k8s": ["**/*.yaml", "**/*.md"],
        "gpuctl_images": ["images.toml", "**/Dockerfile", "**/*.txt", "**/*.md"],
    },
)
