"""Run the walkthrough's notebooks in order with papermill and print a summary (`make demo`).

Executed notebooks, results JSON and plots go to the build folder (MMS_BUILD_DIR, default
./build); a notebook that fails is kept as executed, so its last cell shows what went wrong.
The walkthrough is 00-05; `99_cleanup`, which deletes what they made, runs only when asked
(`--cleanup`, after the others, or `--only 99`).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

from .config import build_dir, project_root

KERNEL = "mms-notebooks"
CLEANUP = "99_cleanup"


@dataclass
class Run:
    notebook: str
    ok: bool
    seconds: float
    output: Path
    results: Path
    error: str = ""


def notebooks(folder: Optional[Path] = None, cleanup: bool = False) -> list[Path]:
    """The walkthrough's notebooks in the guide's order (file names 00_, 01_ ...); `99_cleanup` only with `cleanup`."""
    found = sorted((folder or project_root() / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    return [path for path in found if cleanup or path.stem != CLEANUP]


def run_notebook(path: Path, out_dir: Path, parameters: dict[str, Any], kernel: str = KERNEL) -> Run:
    """Execute one notebook with papermill; its results JSON path is passed as `results_path`."""
    import papermill

    out_dir.mkdir(parents=True, exist_ok=True)
    output = out_dir / path.name
    results = out_dir / "results" / f"{path.stem}.json"
    results.parent.mkdir(parents=True, exist_ok=True)
    params = {**parameters, "results_path": str(results), "interactive": False}
    start = time.monotonic()
    try:
        with stderr_to(out_dir / "kernels.log"):
            papermill.execute_notebook(str(path), str(output), parameters=params, kernel_name=kernel,
                                       cwd=str(path.parent), progress_bar=False)
        return Run(path.stem, True, time.monotonic() - start, output, results)
    except Exception as exc:  # noqa: BLE001 - report every failure the same way, keep going
        return Run(path.stem, False, time.monotonic() - start, output, results, _first_line(exc))


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


def _first_line(exc: Exception) -> str:
    """The error's first line, plus its `fix:` line when it has one (SetupError)."""
    # papermill's PapermillExecutionError carries the notebook's own exception name and message.
    ename, evalue = getattr(exc, "ename", ""), getattr(exc, "evalue", "")
    text = (f"{ename}: {evalue}" if ename else str(exc)).strip()
    if not text:
        return type(exc).__name__
    lines = text.splitlines()
    fix = next((line.strip() for line in lines[1:] if line.strip().startswith("fix:")), "")
    return f"{lines[0]}\n    {fix}" if fix else lines[0]


def run_all(parameters: dict[str, Any], out_dir: Path, only: Optional[list[str]] = None,
            stop_on_failure: bool = True, cleanup: bool = False) -> list[Run]:
    """Run every notebook (or those whose names start with one of `only`) in order; 99_cleanup last with `cleanup`."""
    runs = []
    for path in notebooks(cleanup=cleanup or bool(only)):
        if only and not any(path.stem.startswith(prefix) for prefix in only):
            continue
        print(f"running {path.name} ...", flush=True)
        run = run_notebook(path, out_dir, parameters)
        runs.append(run)
        if not run.ok and stop_on_failure:
            break
    return runs


def summary(runs: list[Run], out_dir: Path) -> str:
    """A table a learner can read: each notebook, pass/fail, seconds; then where the outputs are."""
    lines = [f"{'NOTEBOOK':<18} {'RESULT':<6} {'SECONDS':>8}"]
    for run in runs:
        lines.append(f"{run.notebook:<18} {'pass' if run.ok else 'FAIL':<6} {run.seconds:>8.1f}")
        if not run.ok:
            lines.append(f"    {run.error}\n    open {run.output} to see the failing cell")
    lines.append(f"executed notebooks: {out_dir}")
    lines.append(f"results JSON:       {out_dir / 'results'}")
    lines.append(f"plots:              {out_dir / 'plots'}")
    lines.append(f"kernel logs:        {out_dir / 'kernels.log'}")
    lines.append("next: `make lab` opens the notebooks in JupyterLab; `make down` stops the local stack")
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers.walkthrough", description=__doc__)
    parser.add_argument("--only", nargs="*", help="notebook name prefixes, e.g. 00 01")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                        help="a notebook parameter, e.g. -p namespace demo (values are JSON or text)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: build/notebooks)")
    parser.add_argument("--cleanup", action="store_true",
                        help=f"run {CLEANUP} after the others: delete what they made (data kept)")
    args = parser.parse_args(argv)
    params = {}
    for name, value in args.parameter:
        try:
            params[name] = json.loads(value)
        except ValueError:
            params[name] = value
    out_dir = args.out or build_dir() / "notebooks"
    if not notebooks():
        print("no notebooks yet: the local stack is up (`python -m helpers.local status`)")
        return 0
    runs = run_all(params, out_dir, args.only, cleanup=args.cleanup)
    print(summary(runs, out_dir))
    return 0 if runs and all(r.ok for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
