"""The Kubernetes backend: the official client for the API server, Prometheus over HTTP, preflight, retries."""
