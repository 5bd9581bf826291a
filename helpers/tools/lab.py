"""JupyterLab for the notebooks, as a person uses them (`make lab`, `python -m helpers.lab`).

One JupyterLab 4 server on 127.0.0.1 (a free port, or MMS_LAB_PORT), with a generated token
(`IdentityProvider.token`, given in an owner-only config file rather than on the command line),
the notebooks folder as its root, the project's `mms-notebooks` kernel as the default, and the
local stack's environment (KUBECONFIG, MMS_STATE_DIR, MMS_TARGET, the S3 endpoint; never a
secret value) exported to it, so every kernel it starts finds the stack. The news and
update-check pop-ups are turned off through settings overrides, and nothing is fetched from
the internet.

The server is a child process of `helpers.local.stack.process` (own session, log file, health wait
racing its exit); `start_lab` waits until `/api/status` answers 200. `tests/stack/test_browser.py`
uses `start_lab`/`stop_lab` with `isolate=True`, which also points HOME, TMPDIR and Jupyter's
config and data folders (so user settings and workspaces) at the work folder, so a test run
leaves nothing behind; `make lab` keeps the user's own Jupyter settings.
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import sys
import time
from pathlib import Path
from typing import Mapping, NamedTuple, Optional

import requests

from helpers.core.config import build_dir, cache_dir, env_port
from helpers.core.errors import SetupError
from helpers.core.i18n import _
from helpers.core.resources import notebooks_dir
from helpers.core.wait import poll_until
from helpers.local.stack import process

KERNEL = "mms-notebooks"
PORT_SETTING = "MMS_LAB_PORT"

# Settings overrides (JupyterLab's `overrides.json`): defaults a user can still change in the UI.
OVERRIDES = {
    # "Would you like to receive official Jupyter news?" covers the bottom right of the page,
    # and both settings would make requests to the internet.
    "@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": False},
}

def fix_kernel() -> str:
    """How to install the project's kernel (a SetupError's fix)."""
    command = f"{sys.executable} -m ipykernel install --sys-prefix --name {KERNEL} --display-name \"Python ({KERNEL})\""
    return _("install it into the project's virtualenv: `{command}` (`make setup` does this on a fresh .venv)").format(
        command=command)


class Lab(NamedTuple):
    """A started JupyterLab: its process record, the URL to open (with the token) and the token."""

    record: process.ProcessRecord
    url: str
    token: str

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.record.ports['http']}"

    def api(self, path: str, method: str = "GET", timeout: float = 5.0) -> requests.Response:
        """A request to the server's REST API, authenticated with the token."""
        return requests.request(method, f"{self.base_url}{path}", timeout=timeout,
                                headers={"Authorization": f"token {self.token}"})


def check_kernel(name: str = KERNEL) -> Path:
    """The folder of the project's kernelspec; SetupError with the fix if it is missing or broken."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec(name)
    except NoSuchKernel:
        raise SetupError(_("the Jupyter kernel {name!r} is not installed").format(name=name), fix_kernel()) from None
    python = Path(spec.argv[0]) if spec.argv else Path()
    if not python.exists():
        raise SetupError(_("the Jupyter kernel {name!r} ({folder}) runs {python}, which does not exist").format(
                             name=name, folder=spec.resource_dir, python=python), fix_kernel())
    return Path(spec.resource_dir)


def _isolated_env(workdir: Path) -> dict[str, str]:
    """HOME, TMPDIR and every per-user folder Jupyter, IPython and matplotlib write, under `workdir`."""
    home = workdir / "home"
    dirs = {
        "HOME": home,
        "TMPDIR": workdir / "tmp",
        "XDG_CONFIG_HOME": home / ".config",
        "XDG_DATA_HOME": home / ".local" / "share",
        "XDG_CACHE_HOME": home / ".cache",
        "JUPYTER_CONFIG_DIR": workdir / "jupyter" / "config",
        "JUPYTER_DATA_DIR": workdir / "jupyter" / "data",
        "IPYTHONDIR": workdir / "ipython",
        "MPLCONFIGDIR": workdir / "matplotlib",
    }
    for path in dirs.values():
        path.mkdir(parents=True, exist_ok=True)
    values = {key: str(path) for key, path in dirs.items()}
    # The model cache is not per-run state: keep the one this process uses (not one under the new HOME).
    values.setdefault("MMS_CACHE_DIR", str(cache_dir()))
    return values


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read (created 0600, never world-readable for a moment)."""
    path.unlink(missing_ok=True)
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as out:
        out.write(text)


def _argv(root_dir: Path, port: int, token: str, workdir: Path) -> list[str]:
    settings = workdir / "app-settings"
    settings.mkdir(parents=True, exist_ok=True)
    (settings / "overrides.json").write_text(json.dumps(OVERRIDES, indent=2) + "\n")
    # The token goes in an owner-only config file: a command line is readable by every local user (ps).
    config = workdir / "jupyter_server_config.json"
    _write_private(config, json.dumps({"IdentityProvider": {"token": token}}, indent=2) + "\n")
    argv = [
        sys.executable, "-m", "jupyterlab",
        f"--config={config}",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",  # the port asked for, or fail: never another one silently
        f"--ServerApp.root_dir={root_dir}",
        f"--MultiKernelManager.default_kernel_name={KERNEL}",
        f"--LabApp.app_settings_dir={settings}",
        "--LabApp.news_url=None",
        "--LabApp.extension_manager=readonly",  # no PyPI queries from the extension manager
    ]
    if os.geteuid() == 0:
        argv.append("--allow-root")
    return argv


def start_lab(root_dir: Path, port: Optional[int] = None, env: Optional[Mapping[str, str]] = None,
              workdir: Optional[Path] = None, *, isolate: bool = True, timeout: float = 60.0) -> Lab:
    """Start JupyterLab on 127.0.0.1 serving `root_dir`; return once `/api/status` answers 200.

    `port`: None picks MMS_LAB_PORT, else a free one. `env`: variables added to this process's
    environment for the server and every kernel it starts (e.g. `Stack().env()`). `workdir`:
    the server's log, config (with the token, mode 0600), runtime files and settings overrides
    (default build/lab). With `isolate`, HOME, TMPDIR and Jupyter's/IPython's/matplotlib's
    folders (so user settings and workspaces) go there too.
    """
    check_kernel()
    root_dir = Path(root_dir).resolve()
    if not root_dir.is_dir():
        raise SetupError(_("JupyterLab's root folder {folder} does not exist").format(folder=root_dir),
                         _("pass the notebooks folder"))
    workdir = Path(workdir or build_dir() / "lab").resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    if port is None:
        port = env_port(PORT_SETTING)
        port = process.require_port(port, "JupyterLab", PORT_SETTING) if port else process.free_port()
    else:
        process.require_port(port, "JupyterLab", PORT_SETTING)
    token = secrets.token_hex(24)
    runtime = workdir / "runtime"
    runtime.mkdir(parents=True, exist_ok=True)
    child_env = {**os.environ, **(_isolated_env(workdir) if isolate else {}), **dict(env or {}),
                 "JUPYTER_RUNTIME_DIR": str(runtime)}
    child_env.pop("JUPYTER_TOKEN", None)  # the token is ours, given in the config file
    base = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        reply = requests.get(f"{base}/api/status", headers={"Authorization": f"token {token}"}, timeout=2)
        return reply.status_code == 200

    record = process.start("jupyterlab", _argv(root_dir, port, token, workdir), workdir / "jupyterlab.log",
                           answers, env=child_env, cwd=root_dir, timeout=timeout, ports={"http": port})
    (workdir / "lab.json").write_text(json.dumps({"record": record.to_json(), "url": f"{base}/lab"}, indent=2) + "\n")
    return Lab(record, f"{base}/lab?token={token}", token)


def stop_lab(lab: Lab, timeout: float = 20.0) -> bool:
    """Stop the server and its kernels: ask it to shut down (which stops kernels), then TERM/KILL.

    Kernels run in sessions of their own, so signalling the server's process group alone would
    leave them running; the shutdown request stops them first. Returns True if it was running.
    """
    if not lab.record.alive():
        return False
    try:
        lab.api("/api/shutdown", "POST")
        poll_until(lambda: not lab.record.alive(), _("JupyterLab to shut down"), timeout=timeout)
        return True
    except Exception:  # noqa: BLE001 - no answer or too slow: stop it by PID
        return process.stop(lab.record)


def _stack_env() -> dict[str, str]:
    from helpers.local.stack.stack import ORDER, Stack

    stack = Stack()
    records = stack.records()
    down = [name for name in ORDER if not (records.get(name) and records[name].alive())]
    if down:
        print(_("note: the local stack is not running ({parts}); the notebooks will say so. Start it with "
                "`python -m helpers.local up` (or `make up`).").format(parts=", ".join(down)))
    return stack.env()


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers.lab", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=None, help=f"port on 127.0.0.1 (default: ${PORT_SETTING}, else a free one)")
    parser.add_argument("--root", type=Path, default=notebooks_dir(), help="folder to serve (default: notebooks/)")
    args = parser.parse_args(argv)
    try:
        lab = start_lab(args.root, args.port, _stack_env(), build_dir() / "lab", isolate=False)
    except SetupError as exc:
        print(_("error: {error}").format(error=exc), file=sys.stderr)
        return 2
    print(_("JupyterLab is running (pid {pid}); its log: {log}").format(pid=lab.record.pid, log=lab.record.log))
    print(_("kernel: {kernel}; notebooks: {folder}").format(kernel=KERNEL, folder=Path(args.root).resolve()))
    print(_("open this URL in a browser on this machine (it holds the access token):"))
    print(f"\n    {lab.url}\n", flush=True)
    print(_("Ctrl-C stops JupyterLab and its kernels (the local stack keeps running: `make down` stops it)."))

    def stop(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # Ctrl-C, `kill`, a closed terminal
        signal.signal(signum, stop)
    try:
        while lab.record.alive():  # until Ctrl-C, or the server exits on its own (File > Shut Down)
            time.sleep(1.0)
    except KeyboardInterrupt:
        print("\n" + _("stopping JupyterLab ..."))
    finally:
        stop_lab(lab)
    print(_("JupyterLab stopped"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
