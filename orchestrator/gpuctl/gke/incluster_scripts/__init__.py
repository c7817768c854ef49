"""Scripts that run inside the Web UI's pod: the token proxy (authproxy.py), and the idle rule
(idle.py) and API client (incluster.py) that the waker (gke/webui_waker.py) imports. gpuctl
ships them as single files in the ConfigMap gpuctl-webui-scripts (gke/webui.py), and the Open
WebUI image's own Python runs them: each imports only its neighbours here and the standard
library, never gpuctl or anything else installed."""
