"""hpa-exp: reproducible HPA load experiments for LLM inference on Kubernetes."""

__version__ = "0.1.0"
