"""Integrations with team services: MLflow (tracking), DVC, AWS, the GitHub API, Kubernetes,
image registries, and `sail doctor` that checks them all."""
