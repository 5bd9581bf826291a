"""The local Triton: the real `tritonserver` binary from the nvidia-pytriton wheel, on 127.0.0.1.

Stands in for KServe's Triton pod. For the multi-model InferenceService it runs in explicit
model-control mode, as there, so models come and go only through the repository API (the agent's
load/unload). For an InferenceService whose storageUri holds a model repository it runs in
Triton's default mode (`none`), as there: every model in the folder loads at start, the
repository API refuses loads and unloads, and a model that fails to load ends the server.

TorchScript models load through Triton's own pytorch backend when
`make setup` could build it, else through a Python-based one; `torch_backend.choose()` decides and
says why. GraphDef models alike, through Triton's own tensorflow backend or a Python-based one
(`tf_backend.choose()`). Either way the guide's model folders serve unchanged on a CPU.
"""
from __future__ import annotations

import os
import shutil
import sys
import sysconfig
from pathlib import Path
from typing import Callable, Mapping, Optional

import requests

from helpers.core.errors import SetupError
from helpers.core.i18n import _
from helpers.local.stack import process, tf_backend, torch_backend
from helpers.local.stack.wheel import pytriton_dir

_BACKENDS_SRC = Path(__file__).resolve().parent.parent / "backends"
_PYTHON_BACKEND_FILES = ("libtriton_python.so", "triton_python_backend_utils.py")
_NATIVE_PYTORCH_FILES = (torch_backend.LIBRARY, torch_backend.LIBTRITONSERVER)


def tritonserver_binary() -> str:
    """The tritonserver executable: $TRITONSERVER if set, else the one in the nvidia-pytriton wheel."""
    given = os.environ.get("TRITONSERVER")
    if given:
        path = Path(given).expanduser()
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise SetupError(_("TRITONSERVER={given} is not an executable file").format(given=given),
                             _("point TRITONSERVER at a tritonserver binary, or unset it to use the one from `make setup`"))
        return str(path)
    binary = pytriton_dir() / "bin" / "tritonserver"
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        raise SetupError(_("tritonserver is missing from the nvidia-pytriton wheel ({binary})").format(binary=binary),
                         _("run `make setup`"))
    return str(binary)


def _copy_if_changed(src: Path, dst: Path, executable: bool = False) -> None:
    if dst.exists():
        same_stat = src.stat().st_size == dst.stat().st_size and src.stat().st_mtime == dst.stat().st_mtime
        if same_stat or src.read_bytes() == dst.read_bytes():
            return
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.copy2(src, tmp)  # keeps mtime, so the next call compares by stat alone
    if executable:
        tmp.chmod(0o755)
    tmp.replace(dst)  # atomic: a running Triton never sees half a file


def prepare_backends(dest: Path) -> Path:
    """Assemble Triton's backend folder in `dest` (idempotent; recopies what changed) and return it.

    `python/` gets the python backend and the stub built for this interpreter's X.Y (taken from
    `python_backend_stubs/`); `tensorflow/` gets what `tf_backend.choose()` picks (Triton's
    `libtriton_tensorflow.so` with links to the tensorflow wheel's two libraries and to
    `libtritonserver.so` beside it, or the Python-based `model.py`); `pytorch/` gets what
    `torch_backend.choose()` picks: Triton's `libtriton_pytorch.so` (with a `libtritonserver.so`
    link beside it to the wheel's renamed library, which it finds through its `$ORIGIN` RUNPATH),
    or the Python-based `model.py`. The other kind's files are removed, so switching either way
    on an existing folder never leaves a stale file that Triton would pick instead.
    """
    dest = Path(dest)
    source = pytriton_dir()
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = source / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise SetupError(_("the nvidia-pytriton wheel has no python backend stub for Python {version} ({stub})").format(
                             version=version, stub=stub),
                         _("use a Python it ships a stub for (see its python_backend_stubs/ folder), then `make setup`"))
    for name in _PYTHON_BACKEND_FILES:
        src = source / "backends" / "python" / name
        if not src.is_file():
            raise SetupError(_("the python backend file {src} is missing").format(src=src), _("run `make setup` again"))
        _copy_if_changed(src, dest / "python" / name)
    _copy_if_changed(stub, dest / "python" / "triton_python_backend_stub", executable=True)
    _prepare_tensorflow(dest / "tensorflow", tf_backend.choose())
    _prepare_pytorch(dest / "pytorch", torch_backend.choose())
    return dest


def _link(link: Path, target: Path) -> None:
    """`link` -> `target`, replaced atomically if it points elsewhere (a running Triton never sees none)."""
    if link.is_symlink() and os.readlink(link) == str(target):
        return
    tmp = link.with_name(link.name + ".tmp")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target)
    tmp.replace(link)


def _prepare_tensorflow(folder: Path, choice: tf_backend.TensorFlowBackend) -> None:
    if choice.native:
        assert choice.library and choice.tf_dir and choice.libtritonserver
        (folder / "model.py").unlink(missing_ok=True)
        _copy_if_changed(choice.library, folder / tf_backend.LIBRARY)
        for name in tf_backend.TF_LIBRARIES:
            _link(folder / name, choice.tf_dir / name)
        _link(folder / tf_backend.LIBTRITONSERVER, choice.libtritonserver)
    else:
        for name in tf_backend.NATIVE_FILES:
            (folder / name).unlink(missing_ok=True)
        _copy_if_changed(_BACKENDS_SRC / "tensorflow" / "model.py", folder / "model.py")


def _prepare_pytorch(folder: Path, choice: torch_backend.TorchBackend) -> None:
    if choice.native:
        assert choice.library and choice.libtritonserver
        (folder / "model.py").unlink(missing_ok=True)
        _copy_if_changed(choice.library, folder / torch_backend.LIBRARY)
        link = folder / torch_backend.LIBTRITONSERVER
        if not (link.is_symlink() and os.readlink(link) == str(choice.libtritonserver)):
            tmp = link.with_name(link.name + ".tmp")
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(choice.libtritonserver)
            tmp.replace(link)
    else:
        for name in _NATIVE_PYTORCH_FILES:
            (folder / name).unlink(missing_ok=True)
        _copy_if_changed(_BACKENDS_SRC / "pytorch" / "model.py", folder / "model.py")


def triton_env(base: Mapping[str, str] | None = None, backends: Path | None = None) -> dict[str, str]:
    """Environment for tritonserver, so its python stub runs this interpreter with this venv's packages.

    The stub links libpython3.X.so.1.0 (found through LD_LIBRARY_PATH) and runs the `python3`
    first on PATH to find its packages: without both it uses the system Python and cannot
    import numpy. The stub and libtriton_python.so also link the wheel's bundled libraries
    (`nvidia_pytriton.libs/`) through an RPATH relative to where the wheel put them, which
    does not hold for the copies in the backend folder: without that folder on the path the
    stub cannot start, and Triton then waits for it forever.

    When the `backends` folder holds Triton's own pytorch backend, torch's `lib/` (libtorch,
    libc10) goes on the path too: the backend links them by name; so does `pytorch/` itself, for
    the `libtritonserver.so` link there (the built library also finds it through its `$ORIGIN`
    RUNPATH; one given in TRITON_PYTORCH_LIB may not). And libtorch gets one math
    thread (MMS_TORCH_THREADS, as the Python-based backend uses), unless OMP_NUM_THREADS is set:
    its default, one per core, fights Triton's HTTP threads on a small machine (measured on 2
    cores: cifar10 p99 22-31 ms with the default, 1.3-3.6 ms with one thread; p50 alike).
    """
    env = dict(os.environ if base is None else base)
    libdirs = [sysconfig.get_config_var("LIBDIR") or ""]
    torch_dir = torch_backend.torch_dir()
    if backends is not None and torch_backend.in_folder(backends) == torch_backend.NATIVE and torch_dir:
        libdirs += [str(torch_dir / "lib"), str(Path(backends) / "pytorch")]
        env.setdefault("OMP_NUM_THREADS", env.get("MMS_TORCH_THREADS", "1"))
    try:
        libdirs.append(str(pytriton_dir().parent.parent / "nvidia_pytriton.libs"))
    except SetupError:
        pass  # TRITONSERVER points elsewhere: its own backends bring their libraries
    bindir = str(Path(sys.executable).parent)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (*libdirs, env.get("LD_LIBRARY_PATH", "")) if p)
    env["PATH"] = os.pathsep.join(p for p in (bindir, env.get("PATH", "")) if p)
    tf_backend.server_env(env, backends)  # the native tensorflow backend's threads and log level
    return env


def ready(port: int) -> bool:
    """True when Triton's HTTP endpoint on `port` says `/v2/health/ready`."""
    return requests.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=2).status_code == 200


def server_argv(model_repository: Path, backends: Path, ports: Mapping[str, int],
                load_all: bool = False) -> list[str]:
    """tritonserver's command line on 127.0.0.1.

    Explicit model control (the default): nothing loads until the agent (or
    `helpers.clients.triton.load_model`) asks, and readiness is not strict, so one bad TrainedModel
    does not mark the server unready. `load_all`: the args KServe gives a Triton predictor with a
    storageUri (no `--model-control-mode=explicit`: kfserving v0.5.1 `predictor_triton.go`, kserve
    v0.15.2 `SetTritonDefaults`), so Triton's own defaults hold: every model in the repository
    loads at start, readiness is strict and a model that fails to load ends the server.
    """
    control = [] if load_all else [
        "--model-control-mode=explicit",
        # Default strict readiness makes /v2/health/ready fail after any failed load: one bad
        # TrainedModel would mark the whole server unready.
        "--strict-readiness=false",
    ]
    return [
        tritonserver_binary(),
        f"--model-repository={model_repository}",
        *control,
        # With keep-alive clients open, shutdown otherwise waits 30 s for them.
        "--exit-timeout-secs=5",
        f"--backend-directory={Path(backends)}",
        "--http-address=127.0.0.1", f"--http-port={int(ports['http'])}",
        "--grpc-address=127.0.0.1", f"--grpc-port={int(ports['grpc'])}",
        "--metrics-address=127.0.0.1", f"--metrics-port={int(ports['metrics'])}",
    ]


def start(name: str, model_repository: Path, backends: Path, ports: Mapping[str, int], log: Path,
          timeout: float = 120, port_setting: str = "MMS_TRITON_PORT",
          on_spawn: Optional[Callable[[int], None]] = None, load_all: bool = False,
          wait: bool = True) -> process.ProcessRecord:
    """Start tritonserver on 127.0.0.1 (ports `http`, `grpc`, `metrics`) and wait until it is ready.

    `load_all` runs it as a storageUri predictor's Triton (see `server_argv`); `wait=False` returns
    once the process exists (the caller polls `ready`, as a kubelet's probe does, while Triton loads
    every model of the repository; the process may also exit, which the caller sees then).
    `port_setting` names, in the busy-port error, the setting the user changes to pick others.
    `on_spawn(pid)` runs once the process exists, before it is ready (the controller puts it in
    its container's memory cgroup there).
    """
    for kind in ("http", "grpc", "metrics"):
        if kind not in ports:
            raise ValueError(f"ports needs an entry for {kind!r}")
        process.require_port(int(ports[kind]), f"tritonserver {name} ({kind})", port_setting)
    model_repository = Path(model_repository)
    model_repository.mkdir(parents=True, exist_ok=True)
    argv = server_argv(model_repository, backends, ports, load_all)
    http_port = int(ports["http"])
    return process.start(name, argv, Path(log), (lambda: ready(http_port)) if wait else (lambda: True),
                         env=triton_env(backends=Path(backends)), timeout=timeout,
                         ports={k: int(v) for k, v in ports.items()}, on_spawn=on_spawn)


def http_url(record: process.ProcessRecord) -> str:
    """The HTTP endpoint of a started Triton, e.g. `http://127.0.0.1:8000`."""
    return f"http://127.0.0.1:{record.ports['http']}"
