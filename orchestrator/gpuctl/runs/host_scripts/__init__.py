"""Scripts that gpuctl copies to a host and runs there (stdlib only, no gpuctl package)."""
