"""06_troubleshooting on a `kubeflow-1.10` stack (KServe 0.15.0): the default sections and the two that
differ from KFServing. A file of its own so that under xdist it runs beside test_doctor.py."""
from __future__ import annotations

import json

import pytest

from helpers.core.config import project_root
from helpers.core.constants import KSERVE_GROUP
from helpers.steps.troubleshoot import pitfalls
from helpers.tools import walkthrough
from support.stacks import pointed_at

KSERVE_SECTIONS = (*pitfalls.DEFAULT, "wrong_prefix", "memory")


@pytest.mark.stack
def test_06_on_the_kserve_profile(kserve_stack, kserve_kube, tmp_path_factory: pytest.TempPathFactory) -> None:
    """KServe 0.15's rules (kubeflow-1.10): the default sections, plus the two that differ from KFServing: the other
    group's annotation prefix, and a model over the server's memory refused (MemoryResourceAvailable=False),
    which the doctor names from the condition."""
    out = tmp_path_factory.mktemp("doctor-kserve")
    with pointed_at(kserve_stack):
        params = {"namespace": "team-d", "offline": True}
        runs = walkthrough.run_all(params, out, only=["00", "01"])
        assert all(r.ok for r in runs), [r.error for r in runs]
        run = walkthrough.run_notebook(project_root() / "notebooks" / "06_troubleshooting.ipynb", out,
                                       {**params, "sections": ",".join(KSERVE_SECTIONS)})
    assert run.ok, run.error
    found = json.loads(run.results.read_text())
    assert found["settings"]["api_group"] == KSERVE_GROUP
    assert set(found["pitfalls"]) == set(KSERVE_SECTIONS)
    assert all(r["broken_seen"] and r["doctor_named"] and r["restored"] for r in found["pitfalls"].values()), found
    assert found["pitfalls"]["memory"]["broken_seen"].startswith("MemoryResourceAvailable=False")
    assert "MemoryResourceAvailable=False" in found["pitfalls"]["memory"]["doctor_evidence"]
    assert "serving.kubeflow.org/s3-" in found["pitfalls"]["wrong_prefix"]["doctor_evidence"]
