"""Who talks to the local stack: the identities it publishes through its state folder.

Two identities, as on a Kubeflow cluster:

- `admin`: the stack's static admin token (`system:masters`), what a platform team has;
- `learner`: the `default-editor` service account of a Profile's namespace, what a Kubeflow
  Notebook pod in that namespace runs as (its token, from the service account's token Secret
  on Kubernetes 1.20), bound to `kubeflow-edit` by the profile controller.

Each gets a folder `<state>/identities/<admin | learner-NS>/` (`helpers.core.config.identity_dir`),
mode 0700, with files mode 0600: `token` (the bearer token), `cookie` (a gateway session,
`<cookie name>=<random>`), `identity.json` (who the token and the session are, no secrets),
and for a learner `kubeconfig`. Learner-facing code reads these files, never this module.

A session cookie stands for what Dex's login gives a browser: the admin's session is the admin;
a learner's session is the Profile's owner (a Kubeflow user, e.g. `learner@example.com`, with
`kubeflow-admin` in the namespace through `namespaceAdmin`). The gateway's authorizer
(`authz`) maps a cookie to that identity; a cookie it does not know is no session.
"""
from __future__ import annotations

import base64
import json
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import yaml

from helpers.core.config import identity_dir, identity_kubeconfig
from helpers.core.errors import SetupError
from helpers.core.i18n import _
from helpers.local.stack.releases import Profile

if TYPE_CHECKING:  # the controller reads tokens with it; the stack's other processes never load it
    from kubernetes import client

LEARNER_SERVICE_ACCOUNT = "default-editor"
ADMIN_USER, ADMIN_GROUPS = "mms-admin", ("system:masters",)
# The session cookie each gateway guard sets (oidc-authservice's default; Kubeflow's oauth2_proxy.cfg).
COOKIE_NAMES = {"authservice": "authservice_session", "oauth2-proxy": "oauth2_proxy_kubeflow"}


def service_account_user(namespace: str, name: str = LEARNER_SERVICE_ACCOUNT) -> tuple[str, list[str]]:
    """The user name and groups Kubernetes gives a service account's token."""
    return (f"system:serviceaccount:{namespace}:{name}",
            ["system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"])


def _write_private(path: Path, text: str) -> None:
    """Write `text` to `path` (mode 0600, atomically) unless it already holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent.parent, 0o700)  # identities/
    os.chmod(path.parent, 0o700)
    if path.exists() and path.read_text() == text:
        return
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    tmp.replace(path)


def _session(folder: Path, profile: Profile) -> None:
    """A session cookie for the identity, made once (kept across restarts, as a browser keeps it)."""
    name = COOKIE_NAMES.get(profile.gateway_auth)
    path = folder / "cookie"
    if not name:
        path.unlink(missing_ok=True)
        return
    old = path.read_text().strip() if path.exists() else ""
    if not old.startswith(f"{name}="):
        _write_private(path, f"{name}={secrets.token_urlsafe(24)}\n")


def publish_admin(root: Path, token: str, profile: Profile) -> Path:
    """The admin's folder: the static token and a session. Returns the folder."""
    folder = identity_dir("admin", root=root)
    _write_private(folder / "token", token + "\n")
    _session(folder, profile)
    _write_private(folder / "identity.json", json.dumps(
        {"identity": "admin", "user": ADMIN_USER, "groups": list(ADMIN_GROUPS),
         "session": {"user": ADMIN_USER, "groups": list(ADMIN_GROUPS)}}, indent=2) + "\n")
    return folder


def learner_token(core: client.CoreV1Api, namespace: str) -> Optional[str]:
    """The `default-editor` token of `namespace` (its token Secret, made by the controller manager), or None yet."""
    from kubernetes.client.exceptions import ApiException

    from helpers.clients.k8s import not_found

    try:
        sa = core.read_namespaced_service_account(LEARNER_SERVICE_ACCOUNT, namespace)
    except ApiException as exc:
        if not_found(exc):
            return None
        raise
    for ref in sa.secrets or []:
        try:
            secret = core.read_namespaced_secret(ref.name, namespace)
        except ApiException as exc:
            if not_found(exc):
                continue
            raise
        if secret.type == "kubernetes.io/service-account-token" and (secret.data or {}).get("token"):
            return base64.b64decode(secret.data["token"]).decode()
    return None


def publish_learner(root: Path, api: client.ApiClient, namespace: str, owner: str, profile: Profile) -> Optional[Path]:
    """The learner's folder for Profile `namespace`: a kubeconfig bound to its `default-editor`, the
    token, and a session of the Profile's `owner`. None while the token Secret does not exist yet."""
    from kubernetes import client

    token = learner_token(client.CoreV1Api(api), namespace)
    if token is None:
        return None
    admin = yaml.safe_load(identity_kubeconfig("admin", root=root).read_text())
    cluster = admin["clusters"][0]
    user, groups = service_account_user(namespace)
    context = f"{LEARNER_SERVICE_ACCOUNT}@{namespace}"
    config = {"apiVersion": "v1", "kind": "Config", "current-context": context,
              "clusters": [cluster],
              "users": [{"name": user, "user": {"token": token}}],
              "contexts": [{"name": context, "context": {"cluster": cluster["name"], "user": user,
                                                         "namespace": namespace}}]}
    folder = identity_dir("learner", namespace, root)
    _write_private(folder / "kubeconfig", yaml.safe_dump(config))
    _write_private(folder / "token", token + "\n")
    _session(folder, profile)
    _write_private(folder / "identity.json", json.dumps(
        {"identity": "learner", "namespace": namespace, "user": user, "groups": groups,
         "session": {"user": owner, "groups": ["system:authenticated"]}}, indent=2) + "\n")
    return folder


def forget_learners(root: Path, keep: set[str]) -> list[str]:
    """Remove the learner folders of namespaces not in `keep` (their Profile is gone); returns them."""
    import shutil

    gone = []
    for folder in sorted((root / "identities").glob("learner-*/")):
        namespace = folder.name[len("learner-"):]
        if namespace not in keep:
            shutil.rmtree(folder, ignore_errors=True)
            gone.append(namespace)
    return gone


def sessions(root: Path) -> dict[str, dict]:
    """Every published session cookie (`name=value`) -> the user and groups it stands for."""
    found = {}
    for folder in sorted((root / "identities").glob("*/")):
        try:
            cookie = (folder / "cookie").read_text().strip()
            who = json.loads((folder / "identity.json").read_text())["session"]
        except (OSError, ValueError, KeyError):
            continue
        found[cookie] = who
    return found


def require(root: Path, identity: str, namespace: str = "") -> Path:
    """The identity's folder, or a SetupError naming what makes it."""
    folder = identity_dir(identity, namespace, root)
    if (folder / "token").exists():
        return folder
    if identity == "admin":
        raise SetupError(_("the local stack at {root} has published no admin credentials yet").format(root=root),
                         _("start it: `python -m helpers.local up`"))
    raise SetupError(_("no learner identity for namespace {namespace!r} yet: its Profile does not exist, or its "
                       "`default-editor` service account has no token yet").format(namespace=namespace),
                     _("as admin, create the Profile (run 00_cluster_prep, or `kubectl apply -f` the guide's profile.yaml "
                       "with name {namespace}), then ask again").format(namespace=namespace))
