"""Run the walkthrough's notebooks in order with papermill and print a summary (`make demo`).

Executed notebooks, results JSON and plots go to the build folder (MMS_BUILD_DIR, default
./build); a notebook that fails is kept as executed, so its last cell shows what went wrong.

As a scheduled regression run on a cluster (a CronJob, a CI schedule):
`python -m helpers.walkthrough --target cluster --junit results.xml [--cleanup]` writes one JUnit
testcase per notebook (the failing cell's error as the failure message, the notebook's results
JSON as its system-out) and exits non-zero when a notebook failed. What the run created in the
namespace (TrainedModels, the InferenceService, the S3 Secret, ServiceAccount and ExternalName
Service) is kept by default (`--keep`), so it can be inspected; `--cleanup` deletes it
afterwards. The namespace, its Profile and the Knative settings from 00 are always kept.

`--lang ko` (or MMS_LANGUAGE=ko, or `language: ko` in the settings file) runs the Korean notebooks:
rendered from the shipped ones into the build folder first (helpers.tools.translations).

The walkthrough is 00-07 (07_one_server_many_models removes what it adds before it ends); `99_cleanup`,
which deletes all that 00-05 made (the Profile and the Knative values too, and what a failed 07 left),
runs only when asked: `--only 99`.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

from helpers.core import i18n
from helpers.core.config import build_dir
from helpers.core.i18n import SOURCE_LANGUAGE, _, set_language
from helpers.core.resources import is_checkout, notebooks_dir
from helpers.core.settings import resolve_with_sources
from helpers.core.show import pad, text_width
from helpers.tools import translations

KERNEL = "mms-notebooks"
KERNEL_STARTS = 2  # a kernel that dies before answering is started once more
# A run's kernels keep no input history: nobody recalls a papermill run's cells, and each kernel would
# otherwise open and write IPython's one history database in the home folder (kernels of parallel runs
# share it), ~0.05 CPU s a kernel.
NO_HISTORY = ["--HistoryManager.enabled=False"]
CLEANUP = "99_cleanup"


@dataclass
class Run:
    notebook: str
    ok: bool
    seconds: float
    output: Path
    results: Path
    error: str = ""
    detail: str = ""  # the failing cell's error and traceback, plain text

    def shown(self) -> str:
        """Everything the executed notebook displayed, as text (stream output, else its text/plain)."""
        import nbformat

        parts = []
        for cell in nbformat.read(self.output, as_version=4).cells:
            for output in cell.get("outputs", []):
                parts.append(output.get("text") or (output.get("data") or {}).get("text/plain") or "")
        return "\n".join(parts)


def notebooks(folder: Optional[Path] = None, cleanup: bool = False) -> list[Path]:
    """The walkthrough's notebooks in the guide's order (file names 00_, 01_ ...); `99_cleanup` only with `cleanup`."""
    found = sorted((folder or notebooks_dir()).glob("[0-9][0-9]_*.ipynb"))
    return [path for path in found if cleanup or path.stem != CLEANUP]


def default_kernel() -> str:
    """The project's `mms-notebooks` kernel when installed (`make setup`), else `python3`: the
    kernel of the Python this runs in (a pip-installed package, e.g. in a Kubeflow Notebook)."""
    from jupyter_client.kernelspec import KernelSpecManager

    return KERNEL if KERNEL in KernelSpecManager().find_kernel_specs() else "python3"


def run_notebook(path: Path, out_dir: Path, parameters: dict[str, Any], kernel: str = KERNEL) -> Run:
    """Execute one notebook with papermill; its results JSON path is passed as `results_path`."""
    import papermill

    from helpers.tools import paced_engine

    out_dir.mkdir(parents=True, exist_ok=True)
    output = out_dir / path.name
    results = out_dir / "results" / f"{path.stem}.json"
    results.parent.mkdir(parents=True, exist_ok=True)
    params = {**parameters, "results_path": str(results), "interactive": False}
    start = time.monotonic()
    for attempt in range(1, KERNEL_STARTS + 1):
        try:
            with stderr_to(out_dir / "kernels.log"):
                papermill.execute_notebook(str(path), str(output), parameters=params, kernel_name=kernel,
                                           cwd=str(path.parent), progress_bar=False, engine_name=paced_engine.NAME,
                                           extra_arguments=NO_HISTORY)
            return Run(path.stem, True, time.monotonic() - start, output, results)
        except Exception as exc:  # noqa: BLE001 - report every failure the same way, keep going
            if attempt < KERNEL_STARTS and _kernel_never_started(exc):
                _note(out_dir / "kernels.log", f"{path.name}: {exc}; starting a new kernel ({attempt + 1}/{KERNEL_STARTS})")
                continue
            return Run(path.stem, False, time.monotonic() - start, output, results, _first_line(exc), _detail(exc))
    raise AssertionError("unreachable")


def _kernel_never_started(exc: Exception) -> bool:
    """Did the kernel fail to answer its first request? No cell ran, so starting another is safe.

    Kernels started by several processes at once race for the ports jupyter_client picked for them
    (nteract/papermill#239); under a test run's workers or a busy CI machine a start can also
    outlast papermill's 60 s. Both end before the notebook's first cell.
    """
    text = str(exc)
    return "Kernel died before replying to kernel_info" in text or "Kernel didn't respond in" in text


def _note(log: Path, line: str) -> None:
    with open(log, "a") as out:
        out.write(line + "\n")


@contextlib.contextmanager
def stderr_to(log: Path | str) -> Iterator[None]:
    """Send this process's stderr (file descriptor 2, which child processes inherit) to `log`.

    While a notebook runs, kernels print start-up notices there (e.g. ipykernel's note on TCP
    transport); what a notebook itself prints is kept in the executed notebook.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with open(log, "ab") as out:
        os.dup2(out.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def fix_labels() -> tuple[str, ...]:
    """How a SetupError's message starts its fix line in each language (`fix:`, and its translations)."""
    template = "{cause}\n  fix: {fix}"  # helpers.core.errors
    found = {i18n.catalogue(code).get(template, template).split("\n", 1)[-1].split("{fix}")[0].strip()
             for code in i18n.LANGUAGES}
    return tuple(sorted(found))


def _first_line(exc: Exception) -> str:
    """The error's first line, plus its `fix:` line when it has one (SetupError)."""
    # papermill's PapermillExecutionError carries the notebook's own exception name and message.
    ename, evalue = getattr(exc, "ename", ""), getattr(exc, "evalue", "")
    text = (f"{ename}: {evalue}" if ename else str(exc)).strip()
    if not text:
        return type(exc).__name__
    lines = text.splitlines()
    labels = fix_labels()
    fix = next((line.strip() for line in lines[1:] if line.strip().startswith(labels)), "")
    return f"{lines[0]}\n    {fix}" if fix else lines[0]


def _detail(exc: Exception) -> str:
    """The notebook's error with its traceback, without terminal colours (for a JUnit failure body)."""
    lines = getattr(exc, "traceback", None) or [str(exc)]
    return re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(lines)).strip()


def run_all(parameters: dict[str, Any], out_dir: Path, only: Optional[list[str]] = None,
            stop_on_failure: bool = True, folder: Optional[Path] = None, kernel: str = KERNEL) -> list[Run]:
    """Run every notebook of `folder` (default: the shipped ones), or those whose names start with one
    of `only`, in order; `99_cleanup` only when `only` names it."""
    runs = []
    for path in notebooks(folder, cleanup=bool(only)):
        if only and not any(path.stem.startswith(prefix) for prefix in only):
            continue
        print(_("running {notebook} ...").format(notebook=path.name), flush=True)
        run = run_notebook(path, out_dir, parameters, kernel)
        runs.append(run)
        if not run.ok and stop_on_failure:
            break
    return runs


def summary(runs: list[Run], out_dir: Path) -> str:
    """A table a learner can read: each notebook, pass/fail, seconds; then where the outputs are."""
    result = {True: _("pass"), False: _("FAIL")}
    header = [_("NOTEBOOK"), _("RESULT"), _("SECONDS")]
    widths = [max([text_width(header[0]), 18, *(text_width(run.notebook) for run in runs)]),
              max([text_width(header[1]), *map(text_width, result.values())])]
    lines = [f"{pad(header[0], widths[0])} {pad(header[1], widths[1])} {header[2]:>8}"]
    for run in runs:
        lines.append(f"{pad(run.notebook, widths[0])} {pad(result[run.ok], widths[1])} {run.seconds:>8.1f}")
        if not run.ok:
            lines.append(f"    {run.error}\n    " + _("open {output} to see the failing cell").format(output=run.output))
    lines.append(_("executed notebooks: {folder}").format(folder=out_dir))
    lines.append(_("results JSON:       {folder}").format(folder=out_dir / "results"))
    lines.append(_("plots:              {folder}").format(folder=out_dir / "plots"))
    lines.append(_("kernel logs:        {path}").format(path=out_dir / "kernels.log"))
    if is_checkout():
        lines.append(_("next: `make lab` opens the notebooks in JupyterLab; `make down` stops the local stack"))
    return "\n".join(lines)


def junit_xml(runs: list[Run], planned: list[str], properties: dict[str, Any]) -> str:
    """A JUnit report: one testcase per planned notebook; a failure carries the failing cell's error
    (message: its first line and fix; body: the traceback), system-out the results JSON; a notebook
    not run because an earlier one failed is skipped."""
    by_name = {run.notebook: run for run in runs}
    suite = ET.Element("testsuite", name="mms-walkthrough", tests=str(len(planned)),
                       failures=str(sum(not r.ok for r in runs)), errors="0",
                       skipped=str(len([n for n in planned if n not in by_name])),
                       time=f"{sum(r.seconds for r in runs):.3f}")
    props = ET.SubElement(suite, "properties")
    for key, value in properties.items():
        ET.SubElement(props, "property", name=key, value=str(value))
    for name in planned:
        run = by_name.get(name)
        case = ET.SubElement(suite, "testcase", classname=f"walkthrough.{properties.get('target', 'local')}",
                             name=name, time=f"{run.seconds:.3f}" if run else "0")
        if run is None:
            ET.SubElement(case, "skipped", message="not run: an earlier notebook failed")
            continue
        if not run.ok:
            failure = ET.SubElement(case, "failure", message=run.error, type=run.error.split(":", 1)[0])
            failure.text = run.detail or run.error
        if run.results.is_file():
            ET.SubElement(case, "system-out").text = run.results.read_text()
    return ET.tostring(suite, encoding="unicode", xml_declaration=True)


def clean_namespace(params: dict[str, Any]) -> list[str]:
    """`--cleanup`: 99_cleanup's teardown (`helpers.steps.operations.cleanup`) of what the run made in its namespace, keeping
    the namespace, the Knative settings and the bucket's files; returns `Kind namespace/name` of each deleted.

    The namespace and server come from the same place as the notebooks' (`helpers.core.settings.resolve_with_sources`:
    the `-p` values, MMS_*, the settings file, the defaults)."""
    from helpers.clients.target import resolve_settings, select
    from helpers.core.constants import api_group
    from helpers.steps.operations import cleanup
    from helpers.steps.prep.preflight import served_api_group

    chosen, _ = resolve_settings(params)
    where = select(chosen["target"])
    namespace = chosen["namespace"]
    api = where.api_client(params.get("identity") or "admin", namespace)
    group = api_group(chosen["api_group"] or served_api_group(api))
    steps = cleanup.teardown(api, group, namespace, chosen["server_name"],
                             delete_data=False, delete_profile=False, restore_knative=False)
    return cleanup.deleted(steps, namespace)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers.walkthrough", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", help="notebook name prefixes, e.g. 00 01")
    parser.add_argument("--target", choices=("local", "cluster"), help="the notebooks' target (as -p target ...)")
    parser.add_argument("--dir", type=Path, default=None,
                        help="run the notebooks of this folder (e.g. the copies `helpers.tools.notebooks copy` made)")
    parser.add_argument("--lang", choices=("en", "ko"), default=None,
                        help="the notebooks' language (default: the language setting, MMS_LANGUAGE, else en)")
    parser.add_argument("--kernel", default=None, help="Jupyter kernel (default: mms-notebooks if installed, else python3)")
    parser.add_argument("--junit", type=Path, default=None, help="write a JUnit XML report here")
    keep = parser.add_mutually_exclusive_group()
    keep.add_argument("--keep", dest="cleanup", action="store_false", default=False,
                      help="leave what the run created in the namespace (default)")
    keep.add_argument("--cleanup", dest="cleanup", action="store_true",
                      help="afterwards, delete the TrainedModels, InferenceService, S3 Secret, ServiceAccount and "
                           "ExternalName Service the run created")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                        help="a notebook parameter, e.g. -p namespace demo (values are JSON or text)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: build/notebooks)")
    args = parser.parse_args(argv)
    params = {}
    for name, value in args.parameter:
        try:
            params[name] = json.loads(value)
        except ValueError:
            params[name] = value
    if args.target:
        params["target"] = args.target
    out_dir = args.out or build_dir() / "notebooks"
    lang = args.lang or resolve_with_sources({})[0]["language"]
    set_language(lang)  # this summary too, not only the notebooks
    if lang != SOURCE_LANGUAGE:
        params["language"] = lang
        if args.dir is None:
            args.dir = out_dir / f"source-{lang}"
            translations.render_all(args.dir, lang)
    planned = [p.stem for p in notebooks(args.dir, cleanup=bool(args.only))
               if not args.only or any(p.stem.startswith(prefix) for prefix in args.only)]
    if not planned:
        print(_("no notebooks in {folder}").format(folder=args.dir or notebooks_dir()))
        return 1
    runs = run_all(params, out_dir, args.only, folder=args.dir, kernel=args.kernel or default_kernel())
    print(summary(runs, out_dir))
    if args.junit:
        args.junit.parent.mkdir(parents=True, exist_ok=True)
        args.junit.write_text(junit_xml(runs, planned, {k: v for k, v in params.items()}))
        print(_("JUnit report:       {path}").format(path=args.junit))
    if args.cleanup:
        for line in clean_namespace(params):
            print(_("deleted {what}").format(what=line))
    return 0 if runs and all(r.ok for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
