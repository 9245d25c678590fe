"""The deployment files: docker-compose.yml validates and has the cluster's topology, the image
pins what pyproject.toml pins and runs as a non-root user, and no secret is written down.

No Docker engine runs here, so ``docker-compose config`` (Debian's package, installed by the
``docker_compose`` fixture when missing) validates the files, and the tests read its rendering.
"""

import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
MULTIHOST = REPO / "deploy" / "compose.multihost.yml"
INSTALL_HINT = "docker-compose is missing; install it with: apt-get install -y docker-compose"

SECRETS = {
    "POSTGRES_PASSWORD": "test-postgres-password",
    "SENSITIVITY_API_TOKEN": "test-api-token",
    "RAY_AUTH_TOKEN": "test-ray-token",
}
SERVICES = {"postgres", "ray-head", "ray-worker", "api"}
APP_SERVICES = ("ray-head", "ray-worker", "api")
RESULTS = "/data/ray_results"  # Tune's storage path in the image
DATASETS = "/data/datasets"  # the operator's data-set directory in the containers


@pytest.fixture(scope="session")
def docker_compose() -> str:
    """The ``docker-compose`` executable, installed from Debian's package when missing."""
    found = shutil.which("docker-compose")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "--no-install-recommends", "docker-compose"]
        # the package lists may be stale or absent: update only when a plain install fails
        for attempt in ([install], [["apt-get", "update"], install]):
            results = (
                subprocess.run(c, env=env, capture_output=True, timeout=600, check=False)
                for c in attempt
            )
            if all(result.returncode == 0 for result in results):
                break
        found = shutil.which("docker-compose")
    if not found:
        pytest.fail(INSTALL_HINT, pytrace=False)
    return found


def run_config(docker_compose: str, env_file: Path, *files: Path) -> subprocess.CompletedProcess:
    """``docker-compose -f … --env-file env_file config`` (docker-compose.yml by default)."""
    # a clean environment: nothing from the caller's shell may fill a compose variable
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")
    env = {key: os.environ[key] for key in keep if key in os.environ}
    argv = [docker_compose]
    for path in files or (COMPOSE,):
        argv += ["-f", str(path)]
    argv += ["--env-file", str(env_file), "config"]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)


def write_env(directory: Path, values: dict[str, str]) -> Path:
    path = directory / ".env"
    path.write_text("".join(f"{key}={value}\n" for key, value in values.items()))
    return path


@pytest.fixture(scope="module")
def config(docker_compose: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """docker-compose.yml as ``docker-compose config`` renders it with a filled ``.env``."""
    env_file = write_env(tmp_path_factory.mktemp("compose"), SECRETS)
    result = run_config(docker_compose, env_file)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    """docker-compose.yml as written (before interpolation)."""
    return yaml.safe_load(COMPOSE.read_text())


def published(service: dict[str, Any]) -> list[int]:
    """The container ports a rendered service publishes on the host."""
    ports = []
    for port in service.get("ports", []):
        if isinstance(port, dict):
            ports.append(int(port["target"]))
        else:  # "host:container[/proto]"
            ports.append(int(str(port).split(":")[-1].split("/")[0]))
    return ports


def volume_targets(service: dict[str, Any]) -> dict[str, str]:
    """``{target: source}`` of a rendered service's volumes."""
    mounts = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            mounts[volume["target"]] = volume["source"]
        else:
            source, target = volume.split(":")[:2]
            mounts[target] = source
    return mounts


# --- the compose file validates ----------------------------------------------------------------


def test_compose_config_validates_with_a_filled_env(config):
    assert set(config["services"]) == SERVICES


@pytest.mark.parametrize("missing", sorted(SECRETS))
def test_a_missing_secret_stops_compose_with_a_message(docker_compose, tmp_path, missing):
    values = {**SECRETS, missing: ""}  # as in a copied .env.example that was not filled in
    result = run_config(docker_compose, write_env(tmp_path, values))
    assert result.returncode != 0
    assert f"set {missing} in .env" in result.stderr


# --- the topology ------------------------------------------------------------------------------


def test_postgres_keeps_its_data_in_a_named_volume_and_has_a_healthcheck(config):
    postgres = config["services"]["postgres"]
    assert postgres["image"] == "postgres:15"
    assert volume_targets(postgres)["/var/lib/postgresql/data"] in config["volumes"]
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert postgres["environment"]["POSTGRES_PASSWORD"] == SECRETS["POSTGRES_PASSWORD"]


def test_the_ray_head_serves_the_dashboard_and_runs_no_trials_by_default(config):
    head = config["services"]["ray-head"]
    command = head["command"]
    assert command[:2] == ["ray", "start"]
    assert {"--head", "--block", "--dashboard-host=0.0.0.0", "--dashboard-port=8265"} <= set(
        command
    )
    assert "--num-cpus=0" in command  # trials only on the workers unless configured
    assert published(head) == [8265]
    assert head["shm_size"]
    assert "gcs_healthz" in " ".join(head["healthcheck"]["test"])


def test_the_worker_reserves_nvidia_gpus_and_scales(config):
    worker = config["services"]["ray-worker"]
    assert worker["command"][:2] == ["ray", "start"]
    assert "--address=ray-head:6379" in worker["command"]
    assert "--block" in worker["command"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert len(devices) == 1
    assert devices[0]["driver"] == "nvidia"
    assert devices[0]["capabilities"] == ["gpu"]
    assert devices[0]["count"] == "all"
    # `--scale ray-worker=N` needs replicas without a fixed name or a fixed host port
    assert "container_name" not in worker
    assert "ports" not in worker
    assert worker["depends_on"]["ray-head"]["condition"] == "service_healthy"
    assert worker["shm_size"]


def test_the_api_starts_after_a_healthy_database_and_head_and_talks_to_the_jobs_api(config):
    api = config["services"]["api"]
    assert api["command"][:3] == ["uvicorn", "--factory", "service.app:create_app"]
    assert api["depends_on"] == {
        "postgres": {"condition": "service_healthy"},
        "ray-head": {"condition": "service_healthy"},
    }
    env = api["environment"]
    password = SECRETS["POSTGRES_PASSWORD"]
    assert env["SENSITIVITY_DATABASE_URL"] == (
        f"postgresql+psycopg://sensitivity:{password}@postgres:5432/sensitivity"
    )
    assert env["SENSITIVITY_RAY_ADDRESS"] == "http://ray-head:8265"
    assert env["SENSITIVITY_API_TOKEN"] == SECRETS["SENSITIVITY_API_TOKEN"]
    assert env["SENSITIVITY_RAY_AUTH_TOKEN"] == SECRETS["RAY_AUTH_TOKEN"]
    assert published(api) == [8000]


def test_only_the_api_and_the_dashboard_are_published(config):
    ports = sorted(port for s in config["services"].values() for port in published(s))
    assert ports == [8000, 8265]


def test_ray_token_auth_is_on_for_the_head_the_workers_and_the_api(config):
    for name in APP_SERVICES:
        env = config["services"][name]["environment"]
        assert env["RAY_AUTH_MODE"] == "token", name
        assert env["RAY_AUTH_TOKEN"] == SECRETS["RAY_AUTH_TOKEN"], name
        assert env["RAY_USAGE_STATS_ENABLED"] == "0", name


def test_head_workers_and_api_run_one_image_and_share_the_results_volume(config):
    services = config["services"]
    assert len({services[name]["image"] for name in APP_SERVICES}) == 1
    for name in APP_SERVICES:
        assert services[name]["build"]["context"] == str(REPO), name
        # Tune's storage path: drivers on the head and trials on the workers write there
        assert volume_targets(services[name]).get(RESULTS) == "results", name
    assert "results" in config["volumes"]


def test_head_and_workers_read_the_data_sets_from_a_read_only_mount(config):
    services = config["services"]
    for name in ("ray-head", "ray-worker"):
        service = services[name]
        assert service["environment"]["SENSITIVITY_DATASETS_DIR"] == DATASETS, name
        mounts = [v for v in service["volumes"] if isinstance(v, str) and f":{DATASETS}" in v]
        mounts += [v for v in service["volumes"] if isinstance(v, dict) and v["target"] == DATASETS]
        assert len(mounts) == 1, (name, service["volumes"])
        mount = mounts[0]
        read_only = mount.get("read_only") if isinstance(mount, dict) else mount.endswith(":ro")
        assert read_only, (name, mount)  # a trial can never write (or download) there
        assert "SENSITIVITY_ALLOW_DOWNLOADS" not in service["environment"], name
    assert DATASETS not in volume_targets(services["api"])  # the API reads no data sets


def test_no_secret_is_written_in_the_compose_file(raw):
    text = COMPOSE.read_text()
    for value in SECRETS.values():
        assert value not in text
    secret_name = re.compile(r"PASSWORD|TOKEN|SECRET", re.IGNORECASE)
    for service in raw["services"].values():  # YAML merge keys (<<: *ray-env) resolved
        for key, value in service.get("environment", {}).items():
            if secret_name.search(key):
                # required, with no default: `${NAME:?message}`
                assert re.fullmatch(r"\$\{[A-Z_]+:\?[^}]*\}", str(value)), (key, value)
    # the database URL's password comes from the environment too
    url = raw["services"]["api"]["environment"]["SENSITIVITY_DATABASE_URL"]
    assert re.search(r":\$\{POSTGRES_PASSWORD:\?[^}]*\}@", url), url


def test_env_example_documents_every_variable_and_holds_no_secret():
    example = (REPO / ".env.example").read_text()
    documented = set(re.findall(r"^#?([A-Z][A-Z0-9_]*)=", example, re.MULTILINE))
    used = set()
    for path in (COMPOSE, MULTIHOST):
        used |= set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", path.read_text()))
    assert used - documented == set()
    for name in SECRETS:
        assert re.search(rf"^{name}=$", example, re.MULTILINE), f"{name} must be empty"


# --- other machines ----------------------------------------------------------------------------


def test_the_multihost_override_puts_ray_on_the_host_network(docker_compose, tmp_path):
    values = {**SECRETS, "RAY_HEAD_ADDRESS": "10.0.0.1:6379", "RESULTS_NFS_SERVER": "10.0.0.2"}
    result = run_config(docker_compose, write_env(tmp_path, values), COMPOSE, MULTIHOST)
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    for name in APP_SERVICES:
        assert services[name]["network_mode"] == "host", name
    assert "--address=10.0.0.1:6379" in services["ray-worker"]["command"]
    # a head and a worker on one host network must not share the agent's default port 52365
    assert "--dashboard-agent-listen-port=52366" in services["ray-worker"]["command"]
    assert services["api"]["environment"]["SENSITIVITY_RAY_ADDRESS"] == "http://127.0.0.1:8265"
    results = yaml.safe_load(result.stdout)["volumes"]["results"]
    assert results["driver_opts"]["type"] == "nfs"
    # PostgreSQL stays unreachable from other machines
    for port in services["postgres"]["ports"]:
        host_ip = port.get("host_ip") if isinstance(port, dict) else port.split(":")[0]
        assert host_ip == "127.0.0.1", port


def test_a_worker_host_must_name_the_head(docker_compose, tmp_path):
    values = {**SECRETS, "RESULTS_NFS_SERVER": "10.0.0.2"}
    result = run_config(docker_compose, write_env(tmp_path, values), COMPOSE, MULTIHOST)
    assert result.returncode != 0
    assert "RAY_HEAD_ADDRESS" in result.stderr


# --- the image ---------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (REPO / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in lines
        if line and not line.startswith("#")
    ]


def pinned(requirement_name: str) -> str:
    """The version pyproject.toml pins for ``requirement_name`` (``name[extras]==version``)."""
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    for requirement in dependencies:
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)(\[[^\]]*\])?==([^;\s]+)", requirement.strip())
        if match and match.group(1).lower() == requirement_name:
            return match.group(3)
    raise AssertionError(f"pyproject.toml does not pin {requirement_name}")


def test_the_image_is_the_official_ray_gpu_image_of_the_pinned_ray_and_python():
    froms = [args for name, args in dockerfile_instructions() if name == "FROM"]
    python = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    tag = "py" + re.search(r"(\d+)\.(\d+)", python).expand(r"\1\2")
    assert froms == [f"rayproject/ray:{pinned('ray')}-{tag}-gpu"]


def test_the_image_installs_the_pinned_torch_and_torchvision_with_pip():
    runs = " ".join(args for name, args in dockerfile_instructions() if name == "RUN")
    assert f"torch=={pinned('torch')}" in runs
    assert f"torchvision=={pinned('torchvision')}" in runs
    assert "pip install --no-cache-dir ." in runs  # the project itself, with its pins
    assert not re.search(r"\b(uv|poetry)\b", runs)


def test_the_image_runs_as_a_non_root_user_with_no_secret_baked_in():
    instructions = dockerfile_instructions()
    users = [args for name, args in instructions if name == "USER"]
    assert users and users[-1] not in ("root", "0")
    settings = " ".join(args for name, args in instructions if name in ("ENV", "ARG"))
    assert not re.search(r"PASSWORD|TOKEN|SECRET", settings, re.IGNORECASE)
    # the build context is an allow-list, so .env (and .venv, data/) never reach the image
    ignored = (REPO / ".dockerignore").read_text().splitlines()
    assert "*" in ignored
    assert not [line for line in ignored if line.startswith("!.env")]
