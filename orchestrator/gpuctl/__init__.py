"""gpuctl: ephemeral spot GPU machines on Google Cloud, guarded so they never bill forgotten."""

__version__ = "0.1.0"
