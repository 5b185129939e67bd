"""The HTTP service and its web page (needs the serve extra: fastapi, uvicorn, python-multipart)."""
