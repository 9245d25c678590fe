"""The service's face: the FastAPI app (REST + a small HTML page) and the ``sensitivity`` CLI."""
