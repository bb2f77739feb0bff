"""Deploying the service beyond one machine (Kubernetes manifests from the config)."""
