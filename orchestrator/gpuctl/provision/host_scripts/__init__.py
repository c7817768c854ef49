"""Scripts that provisioning copies onto hosts as single files (stdlib only, Python 3.9+)."""
