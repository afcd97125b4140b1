"""Kubernetes: manifests for a tagged notebook (and, later, the engine that submits them)."""
