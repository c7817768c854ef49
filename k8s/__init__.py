"""gpuctl's Kubernetes manifests as package data (import name `gpuctl_k8s`): the kustomize
bases the orchestrator fills in, found with importlib.resources in a checkout and in a wheel."""
