"""Service-wide settings from environment variables, the same names in every deployment.

Every variable is prefixed ``SENSITIVITY_`` (e.g. ``SENSITIVITY_DATABASE_URL``). The embedded
default needs none of them: a SQLite file and Ray results under ``./data``, and a local Ray head
with its dashboard on 127.0.0.1:8265. ``docker compose`` sets them for the cluster.
"""

from functools import cached_property
from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url


def redacted_url(url: str) -> str:
    """``url`` without its password (the form that may appear in logs and job metadata)."""
    try:
        parsed = make_url(url)
    except Exception:  # not a URL SQLAlchemy reads: nothing to redact, say nothing of it
        return "<unparsable database URL>"
    return parsed._replace(password=None).render_as_string(hide_password=False)


def has_password(url: str) -> bool:
    """Whether the database URL carries a password (then it is a secret)."""
    try:
        return make_url(url).password is not None
    except Exception:
        return True  # unknown: treat as secret


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
    # the service's address as its users reach it (links in the Ray jobs' metadata); default:
    # where `sensitivity serve` listens
    public_url: str | None = None
    # the local Ray head started by the launcher in the embedded default
    local_ray_dashboard_port: int = 8265
    local_ray_num_cpus: int | None = None  # None: all cores
    # an API token: when set, mutating requests need `Authorization: Bearer <token>`
    api_token: str | None = Field(default=None, repr=False)
    # a Ray token, passed to Ray when its token auth is enabled (compose)
    ray_auth_token: str | None = Field(default=None, repr=False)
    # the largest study (trials) the API accepts
    max_trials: int = Field(default=5_000, ge=1)

    # --- limits checked at submit (docs/architecture.md, "Limits"): a 422 (429 for the
    # unfinished studies) names the field, the limit and the variable that sets it
    max_body_bytes: int = Field(default=1 << 20, ge=1)  # a request body larger is a 413
    max_budget_steps: int = Field(default=1_000_000, ge=1)  # budget.steps
    max_budget_epochs: int = Field(default=10_000, ge=1)  # budget.epochs
    max_optimizers: int = Field(default=32, ge=1)  # entries of `optimizers`
    max_eta_values: int = Field(default=256, ge=1)  # η values of one grid (after decades)
    max_axis_values: int = Field(default=256, ge=1)  # values of any other grid axis or sweep
    max_tags: int = Field(default=32, ge=0)
    # the task options' size fields (studies.submission.TASK_SIZE_FIELDS says which is which)
    max_task_samples: int = Field(default=1_000_000, ge=1)  # n_samples, subsets, kernel samples
    max_task_width: int = Field(default=8_192, ge=1)  # features, centres, memory, hidden units
    max_task_sequence: int = Field(default=1_000, ge=1)  # DNC pattern lengths and repeats
    max_unfinished_studies: int = Field(default=100, ge=1)  # pending + running at once: 429

    # --- reads and the reconciler
    # when set (with api_token), every route but /health and the API docs needs the token
    protect_reads: bool = False
    # seconds between two passes of the reconciler in the API process (0: no background pass;
    # `sensitivity reconcile` still runs one)
    reconcile_interval_seconds: float = Field(default=30.0, ge=0)
    # a study changed less than this long ago is left to whoever changed it
    reconcile_grace_seconds: float = Field(default=30.0, ge=0)
    # launches of one study (its first included) before the reconciler gives up and fails it
    max_launch_attempts: int = Field(default=3, ge=1)
    # every call to Ray's Jobs API gives up after this long (then: 503, the study unchanged)
    ray_timeout_seconds: float = Field(default=10.0, gt=0)

    # --- set by the launcher in a driver's job environment (never by hand)
    # which launch of its study this driver is: it claims the study only for that launch
    launch_attempt: int | None = Field(default=None, ge=0)
    # the database URL without its password: a driver whose own SENSITIVITY_DATABASE_URL
    # names another database refuses to start (the password is never in the job's metadata)
    expected_database: str | None = None
    # the URL of the Ray dashboard shown to users (links from the API and the web page)
    ray_dashboard_url: str | None = None

    # the operator's data sets (LIBSVM files, torchvision layouts); default: <data_dir>/datasets.
    # A spec names a data set or a file inside it, never a path.
    datasets_dir: Path | None = None
    # whether tasks may download a missing data set into datasets_dir (off: the operator
    # provides them)
    allow_downloads: bool = False

    @model_validator(mode="after")
    def _same_database(self) -> "Settings":
        if self.expected_database and redacted_url(self.resolved_database_url) != (
            self.expected_database
        ):
            raise ValueError(
                f"SENSITIVITY_DATABASE_URL names {redacted_url(self.resolved_database_url)}, "
                f"but this driver was launched for {self.expected_database}: set the database "
                "URL (with its password) in the environment of the Ray head and workers"
            )
        return self

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
