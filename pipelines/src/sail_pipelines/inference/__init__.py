"""The inference side: a verified bundle's predictions by the runtime that serves it (model, with
the compiled path in onnx), the API (serve), batch scoring (predict, batch_io), the serving smoke
test and the bundle as an MLflow model (pyfunc), all through the same verified bundle and fitted
Shared Transformation Layer."""
