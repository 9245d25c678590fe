"""Serving the app with uvicorn: the embedded default in one call.

``serve(host, port, data_dir)`` sets the data directory (SQLite file, Ray results, the local Ray
head's log), starts the app — whose lifespan reuses or starts a local Ray head on 127.0.0.1 —
prints where to look, and on SIGTERM or Ctrl-C shuts down cleanly, stopping the Ray head it
started.
"""

from pathlib import Path

import uvicorn

from service.app import create_app
from studies.settings import Settings


def serve(host: str = "127.0.0.1", port: int = 8000, data_dir: Path | None = None) -> None:
    """Run the API until interrupted."""
    overrides = {"data_dir": data_dir} if data_dir is not None else {}
    settings = Settings(**overrides)
    app = create_app(settings, public_url=f"http://{host}:{port}")
    uvicorn.run(app, host=host, port=port, log_level="info")
