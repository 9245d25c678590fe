"""Launcher pieces that need no running study: job ids, driver environment, head reuse, and
which cluster a job's driver joins."""

import contextlib
import os
import sys
import time
from pathlib import Path

import pytest

from studies.settings import Settings
from workers.launcher import LocalRayHead, RayJobLauncher, driver_environment, submission_id
from workers.ray_env import ray_environment


def test_submission_ids_name_the_study_and_count_resumes():
    assert submission_id("abc123", "DNC heatmap (Fig. 3)") == "dnc-heatmap-fig-3-abc123"
    assert submission_id("abc123", "DNC heatmap (Fig. 3)", 2) == "dnc-heatmap-fig-3-abc123-r2"
    assert submission_id("abc123", "!!!") == "study-abc123"
    assert len(submission_id("f" * 32, "x" * 300)) <= 40 + 1 + 32


def test_driver_environment_points_at_the_store_and_storage(tmp_path):
    settings = Settings(data_dir=tmp_path, ray_auth_token="secret")
    env = driver_environment(settings, attempt=2)
    assert env["SENSITIVITY_DATABASE_URL"] == f"sqlite:///{(tmp_path / 'studies.sqlite').resolve()}"
    assert env["SENSITIVITY_STORAGE_PATH"] == str((tmp_path / "ray_results").resolve())
    assert env["RAY_AUTH_MODE"] == "token" and "RAY_AUTH_TOKEN" not in env  # a secret
    assert env["RAY_USAGE_STATS_ENABLED"] == "0" and env["SENSITIVITY_LAUNCH_ATTEMPT"] == "2"
    assert ray_environment(Settings())["RAY_AUTH_MODE"] == "disabled"
    assert ray_environment(settings)["RAY_AUTH_TOKEN"] == "secret"  # for the process itself


def test_an_unreachable_jobs_api_is_a_cluster_error_never_an_answer(tmp_path):
    from studies.exceptions import ClusterUnavailable
    from tests.postgres import free_port

    settings = Settings(data_dir=tmp_path, ray_timeout_seconds=0.5)
    launcher = RayJobLauncher(f"http://127.0.0.1:{free_port()}", settings)
    for call in (lambda: launcher.status("job"), lambda: launcher.submit("id", "name"),
                 lambda: launcher.stop("job"), lambda: launcher.logs("job")):  # fmt: skip
        with pytest.raises(ClusterUnavailable, match="is unreachable"):
            call()
    assert launcher.node_capacity() is None  # unknown: a submit is accepted


@pytest.mark.slow
def test_local_head_reuses_a_running_head_and_leaves_it_alone(ray_head):
    again = LocalRayHead(dashboard_port=ray_head.dashboard_port)
    assert again.ensure() == ray_head.dashboard_url
    assert not again.started_here
    again.stop()  # stops nothing: it did not start the head
    from workers.launcher import dashboard_answers

    assert dashboard_answers(ray_head.dashboard_url)


def test_a_driver_joins_the_cluster_its_settings_name_whatever_ray_address_says(monkeypatch):
    """``ray.init`` prefers ``RAY_ADDRESS`` to its argument; the driver's setting must win."""
    import ray

    from workers.run import StudyDriver

    joined = []
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")  # another cluster's
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kwargs: joined.append(os.environ["RAY_ADDRESS"]))
    settings = Settings(ray_cluster_address="127.0.0.1:2")
    StudyDriver(None, "study", settings)._connect_ray()  # type: ignore[arg-type]
    assert joined == ["127.0.0.1:2"]


@pytest.mark.slow
def test_jobs_get_their_own_heads_address_when_another_head_starts_later(ray_head, tmp_path):
    """Ray's Jobs API gives a job's driver the address of the last head started with the same
    Ray temp directory: each head started here has its own, so a later head (here a second
    one, as a test run next to a running service starts) does not capture the first's jobs."""
    from ray.job_submission import JobStatus, JobSubmissionClient

    from tests.ray_cluster import ray_head as start_head

    def address_seen_by_a_job(dashboard_url: str) -> str:
        client = JobSubmissionClient(dashboard_url)
        job = client.submit_job(
            entrypoint=f"{sys.executable} -c \"import os; print('at', os.environ['RAY_ADDRESS'])\""
        )
        deadline = time.monotonic() + 120
        while client.get_job_status(job) not in {JobStatus.SUCCEEDED, JobStatus.FAILED}:
            assert time.monotonic() < deadline, client.get_job_logs(job)
            time.sleep(0.5)
        (line,) = [x for x in client.get_job_logs(job).splitlines() if x.startswith("at ")]
        return line.split()[1]

    def recorded(head) -> bool:
        """Whether ``ray start`` has recorded the head's address (its last step, after the
        dashboard answers), in the shared default Ray temp directory or the head's own."""
        from ray._common.utils import get_default_ray_temp_dir

        places = [Path(get_default_ray_temp_dir()), head.temp_dir or head._own_temp_dir]
        for place in places:
            with contextlib.suppress(OSError):
                if (place / "ray_current_cluster").read_text().strip() == head.gcs_address:
                    return True
        return False

    with start_head(tmp_path, num_cpus=1) as later:
        deadline = time.monotonic() + 60
        while not recorded(later):
            assert time.monotonic() < deadline, "the second head never finished starting"
            time.sleep(0.2)
        assert address_seen_by_a_job(ray_head.dashboard_url) == ray_head.gcs_address
        assert address_seen_by_a_job(later.dashboard_url) == later.gcs_address
    assert ray_head._own_temp_dir is not None and ray_head._own_temp_dir.is_dir()
    assert later._own_temp_dir is None  # removed with its head
