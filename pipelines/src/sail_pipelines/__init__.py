"""SAIL pipeline steps: one module per step, one `sail` command over them. The subpackages are
layered in the order of the flow (ARCHITECTURE.md, tests/test_layers.py)."""

__version__ = "0.1.0"
