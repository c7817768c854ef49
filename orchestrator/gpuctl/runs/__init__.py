"""Training runs on a gpuctl VM (or any SSH host): sync, detached start, logs, progress, cost."""
