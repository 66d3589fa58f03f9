"""Low-level clients of the services every side uses, at the bottom of the package: the Docker
engine (containers, image names, the image build), the DVC remote, MLflow tracking, AWS, the GitHub
API, kubectl and image registries. They import only config and the base modules."""
