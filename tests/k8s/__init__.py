"""A real Kubernetes control plane for tests: etcd, kube-apiserver, kube-controller-manager and
kube-scheduler (built by scripts/build-controlplane.sh), plus KWOK pretending to be the kubelets
of GKE-shaped nodes (spot GPU node pools). See fixtures.py for the pytest entry points."""
