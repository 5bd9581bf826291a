"""Running the walkthrough's notebooks from tests, and reading what they left."""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence

import pytest
from kubernetes import client

from helpers.core import settings
from helpers.core.config import project_root
from helpers.core.constants import api_group
from helpers.core.i18n import SOURCE_LANGUAGE
from helpers.core.wait import poll_until
from helpers.local.stack.stack import Stack
from helpers.tools import translations, walkthrough

NOTEBOOKS = ["00_cluster_prep", "01_minio", "02_server", "03_cifar10", "04_inception", "05_lifecycle"]
GUIDE = NOTEBOOKS[:5]  # the guide's steps; 05 goes beyond it


def run_walkthrough(out_dir: Path, parameters: dict, notebooks: Sequence[str] = tuple(NOTEBOOKS), lang: str = "en",
                    after: Optional[Callable[[walkthrough.Run], None]] = None) -> dict[str, walkthrough.Run]:
    """Run `notebooks` (00-05 by default) in order with papermill; every one must pass.

    `lang`: the notebooks of that language, rendered from the catalogues into `out_dir/source-<lang>` as
    `python -m helpers.walkthrough --lang` does. `after(run)` is called after each notebook, before the next.
    """
    folder = None
    if lang != SOURCE_LANGUAGE:
        folder = out_dir / f"source-{lang}"
        translations.render_all(folder, lang)
        parameters = {**parameters, "language": lang}
    runs: dict[str, walkthrough.Run] = {}
    for name in notebooks:
        for run in walkthrough.run_all(parameters, out_dir, only=[name], folder=folder):
            runs[run.notebook] = run
            assert run.ok, f"{run.notebook}: {run.error} (see {run.output})"
            if after:
                after(run)
    assert list(runs) == list(notebooks)
    return runs


def doctor(stack: Stack, namespace: str, server: str, bucket: str) -> tuple[int, list[dict]]:
    """`python -m helpers.doctor --json` on a learner's namespace, as the admin: (exit code, findings)."""
    done = subprocess.run([sys.executable, "-m", "helpers.doctor", "--namespace", namespace, "--server", server,
                           "--bucket", bucket, "--json"], capture_output=True, text=True, timeout=240,
                          cwd=project_root(), env={**os.environ, **stack.env()})
    return done.returncode, json.loads(done.stdout or "[]")


def results(runs: dict[str, walkthrough.Run], name: str) -> dict:
    return json.loads(runs[name].results.read_text())


def read_notebook(path: Path, validate: bool = False):
    """The notebook at `path`, as nbformat reads it (version 4); checked against its schema with `validate`.

    nbformat is imported here, when a test reads a notebook, never while test modules are collected: its
    import goes through jsonschema to rfc3987_syntax, which builds a grammar, and under pytest's assertion
    rewriting that cost each xdist worker about 3 CPU seconds before its first test (docs/testing.md).
    """
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    if validate:
        nbformat.validate(notebook)
    return notebook


def delete_server(api, local, group: str, name: str, namespace: str) -> None:
    """Delete a server a walkthrough made and wait until its processes are gone."""
    ag = api_group(group)
    try:
        client.CustomObjectsApi(api).delete_namespaced_custom_object(
            ag.group, ag.isvc_version, namespace, "inferenceservices", name)
    except client.exceptions.ApiException:
        pass
    folder = local.servers_dir / f"{namespace}.{name}"
    poll_until(lambda: not (folder / "processes.json").exists(),
               "the local controller to stop the walkthroughs' servers", timeout=120)


@contextlib.contextmanager
def settings_file(values: dict) -> Iterator[Path]:
    """A workshop settings file with `values`, which the notebooks' kernels read (MMS_SETTINGS) for a while."""
    previous = os.environ[settings.SETTINGS_FILE_ENV]
    path = settings.save(values, Path(previous).parent / "workshop-settings.yaml")
    with pytest.MonkeyPatch.context() as env:
        env.setenv(settings.SETTINGS_FILE_ENV, str(path))
        yield path


def secrets_of(stack) -> dict[str, str]:
    creds = stack.s3_credentials()
    token = (stack.root / "pki" / "tokens.csv").read_text().split(",", 1)[0].strip()
    found = {"s3 access key": creds.access_key, "s3 secret key": creds.secret_key, "apiserver token": token}
    assert all(len(value) >= 8 for value in found.values())
    return found


def assert_no_secret(local, runs: dict[str, walkthrough.Run]) -> None:
    out_dir = runs["00_cluster_prep"].output.parent
    files = [p for p in out_dir.rglob("*") if p.is_file() and p.suffix in (".ipynb", ".json")]
    files += [p for p in local.root.rglob("*.log") if p.is_file()]
    assert len(files) > 10
    found = secrets_of(local)
    for path in files:
        text = path.read_text(errors="replace")
        for what, value in found.items():
            assert value not in text, f"{what} appears in {path}"
