"""Launcher pieces that need no running study: job ids, driver environment, head reuse."""

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
