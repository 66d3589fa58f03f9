"""The data contract and the Shared Transformation Layer: what every row must look like
(schema), how raw data is checked (validate), read (data) and turned into model inputs (stl).
Training, evaluation, the API and batch all go through this one definition."""
