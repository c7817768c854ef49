"""GKE: the cluster's lifecycle, and what gpuctl runs on it (training Jobs, the Web UI)."""
