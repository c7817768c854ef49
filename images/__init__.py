"""gpuctl's container image recipes as package data (import name `gpuctl_images`): images.toml
names every image gpuctl deploys and its pinned digest, found with importlib.resources."""
