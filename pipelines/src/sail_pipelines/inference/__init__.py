"""The inference side: the API (serve), batch scoring (predict) and the serving smoke test, all
through the same verified bundle and fitted Shared Transformation Layer."""
