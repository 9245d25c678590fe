"""Service-wide settings from environment variables, the same names in every deployment.

Every variable is prefixed ``SENSITIVITY_`` (e.g. ``SENSITIVITY_DATABASE_URL``). The embedded
default needs none of them: a SQLite file and Ray results under ``./data``, and a local Ray head
with its dashboard on 127.0.0.1:8265. ``docker compose`` sets them for the cluster.
"""

from functools import cached_property
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """The configuration of the API, the launcher and the study drivers."""

    model_config = SettingsConfigDict(env_prefix="SENSITIVITY_", extra="ignore")

    # where the SQLite file, Ray results and logs go in the embedded default
    data_dir: Path = Path("./data")
    # SQLAlchemy URL; default: sqlite:///<data_dir>/studies.sqlite
    database_url: str | None = None
    # Ray Jobs API (dashboard) address for the launcher; None = start/reuse a local head
    ray_address: str | None = None
    # cluster address a study driver joins (`ray.init(address=...)`); None = the job's cluster
    ray_cluster_address: str | None = None
    # absolute Tune storage path for trial results; default: <data_dir>/ray_results
    storage_path: Path | None = None
    # the local Ray head started by the launcher in the embedded default
    local_ray_dashboard_port: int = 8265
    local_ray_num_cpus: int | None = None  # None: all cores
    # an API token: when set, mutating requests need `Authorization: Bearer <token>`
    api_token: str | None = Field(default=None, repr=False)
    # a Ray token, passed to Ray when its token auth is enabled (compose)
    ray_auth_token: str | None = Field(default=None, repr=False)
    # the largest study (trials) the API accepts
    max_trials: int = Field(default=5_000, ge=1)
    # the URL of the Ray dashboard shown to users (links from the API and the web page)
    ray_dashboard_url: str | None = None

    # the operator's data sets (LIBSVM files, torchvision layouts); default: <data_dir>/datasets.
    # A spec names a data set or a file inside it, never a path.
    datasets_dir: Path | None = None
    # whether tasks may download a missing data set into datasets_dir (off: the operator
    # provides them)
    allow_downloads: bool = False

    @cached_property
    def resolved_datasets_dir(self) -> Path:
        """The absolute directory workers read data sets from."""
        return (self.datasets_dir or self.data_dir / "datasets").resolve()

    @cached_property
    def resolved_database_url(self) -> str:
        """The database URL, defaulting to the SQLite file in the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'studies.sqlite').resolve()}"

    @cached_property
    def resolved_storage_path(self) -> Path:
        """An absolute Tune storage path (Tune needs one)."""
        return (self.storage_path or self.data_dir / "ray_results").resolve()
