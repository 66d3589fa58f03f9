"""SAIL pipeline steps: one module per step, one `sail` command over them."""

__version__ = "0.1.0"
