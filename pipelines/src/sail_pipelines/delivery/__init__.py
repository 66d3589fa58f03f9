"""Delivery: images (build, package, imagecheck, publish), the DVC push, deploys, promotion,
rollback and the signed audit trail."""
