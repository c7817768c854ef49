"""Scripts that run inside the Web UI's pods (the proxy and the idle rule), shipped as single
files in the ConfigMap gpuctl-webui-scripts (gke/webui.py) and run by the helper image
(images/helper/: Python with the official `kubernetes` client, pinned). Each imports only its
neighbours here, the standard library and `kubernetes`, never gpuctl."""
