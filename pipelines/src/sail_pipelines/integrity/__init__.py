"""Integrity: the signed model bundle and its keys. Nothing is deserialized before its signature
checks out."""
