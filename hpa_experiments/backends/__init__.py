"""Backends: where an experiment runs (a Kubernetes cluster, or the digital twin)."""
