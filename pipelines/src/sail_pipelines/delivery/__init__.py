"""Delivery: the inference image (package, imagecheck, publish), the DVC push, deploys, promotion,
rollback and the signed audit trail. The Docker runtime, image names and the image build they
use are clients (`clients/`)."""
