"""The same opening for every notebook, the settings it runs with, and the results it records.

Explained in 00_cluster_prep. `start(...)` prints what the notebook does, the guide section
it mirrors, the target, package versions and whether the stack and the Kubernetes API answer
(with the fix when they do not). It returns a `Context`: the settings (read from the widgets
when `interactive`, so changing a widget changes what later cells use), the Kubernetes
ApiClient, and a results recorder whose JSON the tests assert on.

`interactive=None` (the notebooks' default) means: show widgets when the notebook runs in a
Jupyter kernel, unless MMS_HEADLESS=1. Papermill runs pass `interactive=False` (as
`helpers.tools.walkthrough` does); widgets never wait for input, so no run ever blocks.
"""
from __future__ import annotations

import json
import platform
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping, Optional

from helpers.clients.inference import ServerRef
from helpers.clients.target import IDENTITIES, Endpoint, Local, Target, resolve_settings, select
from helpers.core import config, i18n
from helpers.core import settings as workshop
from helpers.core.constants import ApiGroup
from helpers.core.constants import api_group as lookup_group
from helpers.core.errors import SetupError
from helpers.core.i18n import _
from helpers.core.progress import _ipython, in_jupyter, set_headless
from helpers.core.show import (  # noqa: F401 - notebooks import these from helpers.notebook
    abridge,
    display_code,
    hand_to_admin,
    mask,
    show_adapted,
    show_equivalent,
    show_guide,
    show_json,
    show_lines,
    show_not_in_guide,
    show_shell,
)

PACKAGES = ("kubernetes", "minio", "tritonclient", "numpy", "matplotlib", "ipywidgets", "papermill")
SETTINGS = ("target", "identity", "namespace", "server_name", "bucket", "api_group", "preset", "language")
# The notebooks that read or write the models' bucket (and so default to a learner's own folder).
OWN_FOLDER_NOTEBOOKS = ("01", "03", "04", "05", "06", "07", "99")


def _error_lines(exc: SetupError) -> list[str]:
    red, bold, reset = "\x1b[31m", "\x1b[1m", "\x1b[0m"
    lines = [f"{red}{bold}{type(exc).__name__}{reset}{red}: {exc.cause}{reset}"]
    if exc.fix:
        lines.append(_("{bold}fix:{reset} {fix}").format(bold=bold, reset=reset, fix=exc.fix))
    return lines


DOCTOR_SECONDS = 45.0  # at most this long for the doctor's look after a failed cell


def _context_of(shell: Any, tb: Any) -> Optional["Context"]:
    """The Context `notebook.start` made in this kernel (`ctx`, else the last one bound to a name);
    None when the error came from `start` itself, or none was made."""
    import traceback

    if any(frame.f_code is start.__code__ for frame, _ in traceback.walk_tb(tb)):
        return None
    found = [v for v in shell.user_ns.values() if isinstance(v, Context)]
    chosen = shell.user_ns.get("ctx")
    return chosen if isinstance(chosen, Context) else (found[-1] if found else None)


def doctor_lines(ctx: "Context", error: BaseException, seconds: float = DOCTOR_SECONDS) -> list[str]:
    """The doctor's problems for the ctx's namespace and server, as lines to print under an error:
    each check, its evidence, its fix. Bounded by `seconds`; never raises (says what went wrong)."""
    import threading

    try:
        where = _("namespace {namespace}, server {server}").format(namespace=ctx.namespace, server=ctx.server_name)
    except SetupError:
        return []  # a setting is the error: there is nowhere sensible for the doctor to look
    found: dict[str, Any] = {}

    def look() -> None:
        try:
            from helpers.steps.troubleshoot import doctor

            found["findings"] = doctor.diagnose(ctx, error=error, show=False)
        except BaseException as exc:  # noqa: BLE001 - the doctor must never hide the notebook's error
            found["failed"] = exc

    worker = threading.Thread(target=look, name="mms-doctor", daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        return [_("(the doctor did not finish within {seconds}s looking at {where}; run "
                  "`python -m helpers.doctor` in a terminal)").format(seconds=f"{seconds:.0f}", where=where)]
    if "failed" in found:
        detail = (str(found["failed"]).splitlines() or [""])[0][:200]
        return [_("(the doctor could not look at {where}: {error}: {detail})").format(
            where=where, error=type(found["failed"]).__name__, detail=detail)]
    from helpers.steps.troubleshoot.doctor import problems

    bad = problems(found["findings"])
    if not bad:
        return [_("the doctor found none of the known pitfalls in {where}").format(where=where)]
    lines = [_("the doctor's findings in {where} (the known pitfalls it sees):").format(where=where)]
    for finding in bad:
        lines += [f"- {finding.check}: {finding.evidence}", "  " + _("fix: {fix}").format(fix=finding.fix)
                  + (f"  [{finding.issue}]" if finding.issue else "")]
    return lines


def _install_error_display() -> None:
    """Show SetupError (and its kinds) as cause + fix, without a wall of traceback, in Jupyter; after a
    SetupError or a wait's timeout in a cell run after `start`, the doctor's findings below it.

    The cell still fails (papermill stops and reports it); only the display is shorter.
    """
    shell = _ipython()
    if shell is None or getattr(shell, "_mms_error_display", False):
        return
    from helpers.core.wait import WaitTimeout

    def handler(self: Any, etype: type, value: BaseException, tb: Any, tb_offset: Any = None) -> list[str]:
        stb = _error_lines(value) if isinstance(value, SetupError) else [f"{etype.__name__}: {value}"]
        self._showtraceback(etype, value, stb)
        try:
            ctx = _context_of(self, tb)
            lines = doctor_lines(ctx, value) if ctx is not None else []
            if lines:
                print("\n".join(lines), flush=True)
        except Exception as exc:  # noqa: BLE001 - never let the doctor replace the notebook's own error
            print(_("(the doctor could not run: {error})").format(error=type(exc).__name__), flush=True)
        return stb

    shell.set_custom_exc((SetupError, WaitTimeout), handler)
    shell._mms_error_display = True


# --- settings --------------------------------------------------------------------------------
def validate_setting(key: str, value: Any) -> str:
    """Check one setting; raise SetupError naming what a valid value looks like (`helpers.core.settings.validate`)."""
    if key == "identity":
        text = str(value or "").strip()
        if text not in IDENTITIES:
            raise SetupError(_("identity {value} is not one of {choices}").format(value=repr(text),
                                                                                  choices=", ".join(IDENTITIES)),
                             _("admin: the cluster admin's credentials (00_cluster_prep); learner: what a Kubeflow "
                               "Notebook's service account may do (01 onwards)"))
        return text
    return workshop.validate(key, value)


class Context:
    """What a notebook runs with: settings, the Kubernetes client, and the results it records."""

    def __init__(self, name: str, guide_section: str, parameters: dict[str, Any],
                 results_path: Path, interactive: bool) -> None:
        self.name = name
        self.guide_section = guide_section
        self.params = dict(parameters)
        self.results_path = Path(results_path)
        self.interactive = interactive
        self.widgets: Any = None
        self._clients: dict[tuple[str, str], Any] = {}
        self._places: dict[str, Target] = {}
        self._lazy: dict[str, Any] = {}
        self._started = time.monotonic()
        self.results: dict[str, Any] = {"notebook": name, "guide_section": guide_section, "timings": {}}

    # settings: the widgets' current values when there are widgets, else the parameters
    def setting(self, key: str) -> str:
        value = self.widgets.values()[key] if self.widgets is not None and key in SETTINGS else self.params.get(key)
        return validate_setting(key, value)

    @property
    def target(self) -> str:
        return self.setting("target")

    @property
    def namespace(self) -> str:
        return self.setting("namespace")

    @property
    def server_name(self) -> str:
        return self.setting("server_name")

    @property
    def bucket(self) -> str:
        return self.setting("bucket")

    @property
    def api_group(self) -> str:
        return self.setting("api_group")

    @property
    def preset(self) -> workshop.Preset:
        """The resources the server and models ask for (`helpers.core.settings.PRESETS`: guide or small)."""
        return workshop.preset(self.setting("preset"))

    @property
    def group(self) -> ApiGroup:
        """Versions and annotation names of the chosen API group."""
        return lookup_group(self.api_group)

    def settings(self) -> dict[str, str]:
        return {key: self.setting(key) for key in SETTINGS}

    @property
    def output_dir(self) -> Path:
        """Where this run's files go: the folder holding `results/` (build/ by default)."""
        parent = self.results_path.parent
        return parent.parent if parent.name == "results" else parent

    @property
    def plots_dir(self) -> Path:
        """PNG plots: `<output_dir>/plots`."""
        return self.output_dir / "plots"

    @property
    def requests_dir(self) -> Path:
        """Request bodies written for curl (`curl -d @cifar10.json`): `<output_dir>/requests`."""
        path = self.output_dir / "requests"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def write_request(self, model: str, body: Any) -> Path:
        """Write a request body to `<requests_dir>/<model>.json` (what `curl -d @<model>.json` sends); say where."""
        path = self.requests_dir / f"{model}.json"
        path.write_text(json.dumps(body))
        print(_("request body written to {path} ({size} bytes)").format(path=path, size=f"{path.stat().st_size:,}"))
        return path

    def param(self, key: str, default: Any = None) -> Any:
        """A notebook-specific parameter (e.g. `top_k`), or `default`."""
        value = self.params.get(key)
        return default if value is None else value

    @property
    def identity(self) -> str:
        return self.setting("identity")

    @property
    def place(self) -> Target:
        """Where this notebook runs and how it reaches the cluster from there (`helpers.clients.target`)."""
        target = self.target
        if target not in self._places:
            self._places[target] = select(target)
        return self._places[target]

    @property
    def api(self) -> Any:
        """The kubernetes ApiClient for the current target, identity and namespace (a learner's depends on
        it; made again when any changes)."""
        key = (self.target, self.identity, self.namespace)
        if key not in self._clients:
            self._clients[key] = self.place.api_client(self.identity, self.namespace)
        return self._clients[key]

    @property
    def server(self) -> "ServerRef":
        """The InferenceService the notebooks share: its name, namespace and API group."""
        return ServerRef(self.server_name, self.namespace, self.group)

    @property
    def endpoint(self) -> Endpoint:
        """How this notebook reaches the server (made once, after 02_server made it Ready)."""
        if "endpoint" not in self._lazy:
            from helpers.steps.serving.endpoint import server_url

            self._lazy["endpoint"] = server_url(self.api, self.place, self.group, self.server_name, self.namespace)
        return self._lazy["endpoint"]

    @property
    def s3(self) -> Any:
        """A minio client for the bucket, with the Secret 01_minio applied in the namespace."""
        if "s3" not in self._lazy:
            from helpers.steps.objectstore.kubeflow_minio import client_for

            self._lazy["s3"] = client_for(self)
        return self._lazy["s3"]

    # results
    def save(self, **verified: Any) -> None:
        """Keep what the notebook verified (`plots`: the PNGs it wrote) and write the results JSON to
        `results_path` (parent folders made): the last cell of every notebook."""
        for key, value in verified.items():
            if key == "plots":
                self.results.setdefault("plots", []).extend(str(path) for path in value)
            else:
                self.results[key] = value
        self.results["settings"] = self.settings()
        self.results["timings"]["notebook_s"] = round(time.monotonic() - self._started, 3)
        self.results_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.results_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.results, indent=2, default=str, ensure_ascii=False) + "\n")
        tmp.replace(self.results_path)
        print(_("results written to {path}").format(path=self.results_path))


# --- the opening -----------------------------------------------------------------------------
def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def check_stack(ctx: Context) -> str:
    """Raise SetupError with the fix unless the target's Kubernetes API answers; return what it is."""
    from kubernetes import client

    api = ctx.api
    try:
        version = client.VersionApi(api).get_code(_request_timeout=10)
    except Exception as exc:  # noqa: BLE001 - any failure here means "not reachable"
        raise SetupError(_("the Kubernetes API at {host} does not answer ({error})").format(
                         host=api.configuration.host, error=type(exc).__name__),
                         ctx.place.unreachable_fix()) from None
    return f"Kubernetes {version.git_version} at {api.configuration.host}"


def _default_results(name: str) -> Path:
    return config.build_dir() / "results" / f"{name}.json"


# Each notebook: the guide's section heading it mirrors (Korean, quoted as the guide writes it).
NOTEBOOKS = {
    "00_cluster_prep": "Multi Model Serving을 위한 세팅",
    "01_minio": "minio 설정",
    "02_server": "InferenceService 생성하기",
    "03_cifar10": "Cifar10 model",
    "04_inception": "Inception model",
    "05_lifecycle": "Trained Model 생성 및 Multi Model Serving 테스트",
    "06_troubleshooting": "Trained Model 생성 및 Multi Model Serving 테스트",
    "07_one_server_many_models": "InferenceService 생성하기",
    "99_cleanup": "Multi Model Serving을 위한 세팅",
}


def purposes() -> dict[str, str]:
    """What each notebook of NOTEBOOKS does, one sentence in the learner's language (`start` prints it)."""
    return {
        "00_cluster_prep": _("check the cluster, make the namespace through a Profile, patch Knative's "
                             "config-deployment"),
        "01_minio": _("read MinIO's keys, apply the S3 Secret and service account, reach the bucket"),
        "02_server": _("create the multi-model Triton InferenceService, wait for READY, read GET /v2"),
        "03_cifar10": _("upload the TorchScript CIFAR-10 model, add it as a TrainedModel, follow the agent, infer"),
        "04_inception": _("add TensorFlow's Inception v3 as a second TrainedModel and classify photos with class "
                          "names"),
        "05_lifecycle": _("update, version, over-size and delete a TrainedModel in the running server"),
        "06_troubleshooting": _("break a server of our own in each known way, see the symptom, let the doctor "
                                "name it, mend it"),
        "07_one_server_many_models": _("measure what one server for many models saves on this cluster, and where it "
                                       "stops"),
        "99_cleanup": _("delete what 00-05 made, in reverse, and put back the Knative settings"),
    }


# The notebooks of NOTEBOOKS written for an admin (once per cluster, or reading what only an admin may: 07 reads
# the nodes, the serving configuration and the metrics API); the others are a learner's, with the rights of a
# Kubeflow Notebook (01-05).
ADMIN_NOTEBOOKS = frozenset({"00_cluster_prep", "06_troubleshooting", "07_one_server_many_models", "99_cleanup"})


def default_identity(name: str, target: Optional[str] = None) -> str:
    """The identity notebook `name` runs as when its `identity` setting is "" (`target`: the setting).

    Where the target chooses credentials by identity (the local stack publishes both), the
    notebook's role: the learner for the learner's notebooks, the admin for 00, 06, 07, 99 and any
    notebook not in NOTEBOOKS. On a cluster the credentials are given (a pod's service account,
    a kubeconfig), so the identity says what they are: "admin" if they may create Profiles (a
    cluster admin's right), else "learner"; the notebook's role if the API cannot tell.
    """
    role = "learner" if name in NOTEBOOKS and name not in ADMIN_NOTEBOOKS else "admin"
    try:
        place = select(target)
        if isinstance(place, Local):
            return role
        from helpers.core.constants import PROFILE_GROUP, PROFILE_PLURAL
        from helpers.steps.prep.preflight import can_i

        return "admin" if can_i(place.api_client(), "create", PROFILE_GROUP, PROFILE_PLURAL, None) else "learner"
    except Exception:  # noqa: BLE001 - a bad target, no config, no answer: start's own checks say why
        return role


_PARAMETER_TYPES = (str, int, float, bool, type(None))


def _parameters(cell: Mapping[str, Any]) -> dict[str, Any]:
    """The plain values of a notebook's namespace (its parameters cell), without IPython's own names."""
    return {k: v for k, v in cell.items()
            if not k.startswith("_") and k not in ("In", "Out") and isinstance(v, _PARAMETER_TYPES)}


def start(name: str, guide_section: str = "", purpose: str = "", *, settings: Optional[Mapping[str, Any]] = None,
          target: Optional[str] = None, identity: str = "", namespace: Optional[str] = None,
          server_name: Optional[str] = None, bucket: Optional[str] = None, api_group: Optional[str] = None,
          preset: Optional[str] = None, language: Optional[str] = None, results_path: Optional[str] = None,
          interactive: Optional[bool] = None, check: bool = True, **parameters: Any) -> Context:
    """The opening cell of every notebook: say what runs where, check the stack, return the Context.

    `settings=locals()` takes the parameters cell's values (target, namespace, ... and extras
    such as `top_k`, kept in `ctx.params`); keywords do the same one by one. A setting left None
    or "" comes from its MMS_* variable, the settings file, a per-learner default or the guide's
    (`helpers.core.settings.resolve_with_sources`). `guide_section` (the guide's Korean heading) defaults
    to the notebook's entry in `NOTEBOOKS`, `purpose` to its entry in `purposes()`, in the chosen language.
    Everything it prints is in that language, but setting names, values and paths.
    """
    if settings is not None:
        given = _parameters(settings)
        return start(name, guide_section, purpose, check=check, **{
            "target": target, "identity": identity, "namespace": namespace, "server_name": server_name,
            "bucket": bucket, "api_group": api_group, "preset": preset, "language": language,
            "results_path": results_path,
            "interactive": interactive, **parameters, **given})
    _install_error_display()
    if interactive is None:
        interactive = in_jupyter() and not config.env_flag("MMS_HEADLESS")
    set_headless(not interactive)
    # Every value checked here, before anything changes (a bad file or variable names itself and the fix).
    chosen, where = resolve_settings({"target": target, "namespace": namespace, "server_name": server_name,
                                      "bucket": bucket, "api_group": api_group, "preset": preset,
                                      "language": language})
    i18n.set_language(chosen["language"])  # before anything is said: every message below is in it
    guide_section = guide_section or NOTEBOOKS.get(name, "")
    purpose = purpose or purposes().get(name, "")
    params = {**chosen, "identity": identity or default_identity(name, chosen["target"]), **parameters}
    ctx = Context(name, guide_section, params, Path(results_path) if results_path else _default_results(name),
                  bool(interactive))
    for key in SETTINGS:
        ctx.setting(key)  # bad input fails here, with the fix, before anything is changed
    if not ctx.params["api_group"]:
        # As on a cluster: the group is the one its KServe/KFServing serves (the local stack's profile).
        from helpers.steps.prep.preflight import served_api_group

        ctx.params["api_group"] = served_api_group(ctx.api)
        where["api_group"] = _("served by the cluster")
    if check and where.get("bucket") == "default" and name[:2] in OWN_FOLDER_NOTEBOOKS:
        # Kubeflow 1.11 (SeaweedFS): the namespace's key may use only its folders of bucket mlpipeline.
        from helpers.steps.objectstore.kubeflow_minio import default_location

        found = default_location(ctx.api, ctx.place, ctx.namespace)
        if found:
            ctx.params["bucket"] = found
            where["bucket"] = _("your namespace's own folder: the only place its S3 key may write")
    print(f"{name}: {purpose}" if purpose else name)
    print(_('guide section: "{section}"').format(section=guide_section))
    print(_("target: {where}, as {identity}").format(where=ctx.place.describe(), identity=ctx.identity))
    print(settings_line(ctx.settings(), where))
    print(_("versions: {versions}").format(versions=", ".join(f"{k} {v}" for k, v in package_versions().items())))
    if interactive:
        from IPython.display import display

        from helpers.lesson.widgets import settings_widgets

        ctx.widgets = settings_widgets(ctx.settings())
        display(ctx.widgets)
    if check:
        reached = check_stack(ctx)
        print(_("check: {what} ✓").format(what=reached))
        ctx.results["api_reachable"] = True
    print(_("results will be written to {path}").format(path=ctx.results_path))
    sys.stdout.flush()
    return ctx


def settings_line(values: Mapping[str, str], sources: Mapping[str, str]) -> str:
    """`settings: namespace=team-a (settings file), bucket=triton (default), ...`: each value and where it
    came from (parameter, MMS_* variable, settings file, per-learner default, default)."""
    given = _("parameter")
    return _("settings: {values}").format(values=", ".join(f"{k}={v} ({sources.get(k) or given})"
                                                         for k, v in values.items() if k != "identity"))
