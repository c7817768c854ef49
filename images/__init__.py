"""gpuctl's container image recipes as package data (import name `gpuctl_images`): the training
image's Dockerfile and pins, and images.toml with its name and tag. gpuctl reads none of it at
run time; the wheel carries it so an installed gpuctl has the recipe beside it."""
