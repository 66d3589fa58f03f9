"""Integrity: the signed model bundle, its keys and image signatures. Nothing is deserialized
before its signature checks out. A bundle here is verified files and metadata; running its model
is the inference side's (`inference/model.py`)."""
