"""Shared fixtures: one embedded local stack per test session, in a temporary state folder."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from helpers.core import settings
from helpers.local.stack.stack import Stack
from support.stacks import pointed_at


@pytest.fixture(scope="session", autouse=True)
def no_workshop_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """For the whole session MMS_SETTINGS names a file that does not exist and the settings' MMS_*
    variables are unset, so a developer's ~/.config/mms-notebooks/settings.yaml or shell never changes a
    test run. Papermill's kernels inherit os.environ, so they read the same. Tests that want a
    settings file point MMS_SETTINGS at one themselves."""
    path = Path(tmp_path_factory.mktemp("no-settings")) / "settings.yaml"
    with pytest.MonkeyPatch.context() as env:
        for key in settings.KEYS:
            if key != "target":
                env.delenv(settings.ENV[key], raising=False)
        env.setenv(settings.SETTINGS_FILE_ENV, str(path))
        yield path


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The real stack (S3, etcd, apiserver, controller manager, controller), started once.

    MMS_STATE_DIR is set for the whole session so that helpers, notebooks' kernels and
    subprocesses all find this stack and never the user's own.
    """
    local = Stack(Path(tmp_path_factory.mktemp("stack")))
    with pointed_at(local):
        try:
            local.up(say=lambda _msg: None)
            yield local
        finally:
            local.down(say=lambda _msg: None)


@pytest.fixture(scope="session")
def kserve_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A second real stack, on the `kubeflow-1.10` profile (serving.kserve.io only, KServe 0.15.0 as Kubeflow 1.10.1 bundles it).

    Tests that run notebooks or commands on it point MMS_STATE_DIR at it with `support.stacks.pointed_at`.
    """
    local = Stack(Path(tmp_path_factory.mktemp("kserve-stack")))
    try:
        local.up(say=lambda _msg: None, profile="kubeflow-1.10")
        yield local
    finally:
        local.down(say=lambda _msg: None)


@pytest.fixture(scope="session")
def kserve_kube(kserve_stack: Stack):
    """A `kubernetes` ApiClient for the kubeflow-1.10 stack."""
    from kubernetes import config as kconfig

    return kconfig.new_client_from_config(config_file=str(kserve_stack.kubeconfig))


@pytest.fixture(scope="session")
def kube(stack: Stack):
    """A `kubernetes` ApiClient for the session's stack."""
    from kubernetes import config as kconfig

    return kconfig.new_client_from_config(config_file=str(stack.kubeconfig))


STACK_FIXTURES = {"stack", "kserve_stack", "kube", "kserve_kube"}
# The files that take longest start first, so no worker is left with one of them at the end
# (xdist's --dist loadfile hands out files in collection order). A scheduling hint, never an assertion.
SLOW_FIRST = ("test_configmap_delay.py", "test_benchmarks_cold.py", "test_notebooks.py", "test_minimal_install.py",
              "test_kubeflow_1_11.py",
              "test_doctor_06.py", "test_notebooks_kubeflow_1_10.py", "test_benchmarks.py", "test_browser.py",
              "test_doctor.py",
              "test_learner.py", "test_kubeflow_1_10_0.py", "test_tf_backend.py",
              "test_controller.py", "test_cleanup_notebook.py", "test_agent.py", "test_supervision.py",
              "test_kserve_sdk.py", "test_rbac.py",
              # then the middle-sized ones, so that a run ends on quick files: left in collection order, the
              # last stack files (test_triton_stack.py, 20-30 s) ran alone on a core at the end
              "test_local_stack.py", "test_node_size.py", "test_repository_server.py", "test_triton_stack.py",
              "test_crds_apiserver.py", "test_sidecar_race.py", "test_mesh.py", "test_metrics_api.py",
              "test_pods_gateway.py", "test_notebook_helpers.py", "test_torch_backend.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that asks for a stack is a stack test, marked or not (`-m "not stack"` leaves it out);
    the slowest files first (a stable sort: each file keeps its own order)."""
    for item in items:
        if STACK_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.stack)
    rank = {name: i for i, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """Whole files per worker, slowest first, the second profile's stack on one worker (support.scheduling)."""
    from support.scheduling import StackAffinityScheduling

    return StackAffinityScheduling(config, log)
