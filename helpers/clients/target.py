"""Where the notebooks run, and how they reach the cluster from there: the one module that knows.

Three places, one interface:

- `Local`: the embedded stack on this machine. It publishes what clients need in its state
  folder (`kubeconfig`; each identity's credentials under `identities/`, see
  `helpers.core.config.identity_dir`: the learner's kubeconfig per Profile namespace, and the gateway
  session and token of each identity) and in the API
  (Services annotated with the loopback address of the process behind them); nothing here
  imports `helpers.local`.
- `InCluster`: a pod, e.g. a Kubeflow Notebook. Its service account is the identity, its own
  namespace the default, and cluster addresses work as they are.
- `OutOfCluster`: a kubeconfig on a laptop or a CI runner. Cluster addresses do not resolve
  here, so Services are reached through a load balancer's address, an address the user gives
  (`MMS_INGRESS_URL`, `MMS_S3_ENDPOINT`), or a port-forward this process starts
  (`helpers.clients.portforward`, stopped when the kernel stops; the `kubectl port-forward` it stands
  for is printed), else the error says which command to run.

`select()` picks one from the `target` setting (`local` or `cluster`) and where the code runs.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional
from urllib.parse import urlsplit

import requests
from kubernetes import client
from kubernetes import config as kconfig
from kubernetes.client.exceptions import ApiException

from helpers.clients import portforward
from helpers.clients.k8s import resolve_address, resolve_url
from helpers.core import config
from helpers.core.constants import DEFAULT_NAMESPACE, ApiGroup
from helpers.core.errors import SetupError
from helpers.core.i18n import _
from helpers.core.settings import resolve_with_sources

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
IDENTITIES = config.IDENTITIES
# Where a cluster's ingress gateway may be (Kubeflow's Istio; the guide's KFServing gateway).
INGRESS_GATEWAYS = (("istio-system", "istio-ingressgateway"), ("istio-system", "kfserving-ingressgateway"))
INGRESS_ENV = "MMS_INGRESS_URL"
INGRESS_PORT = "http2"  # the gateway Service's port for plain HTTP (80 on Istio's)
S3_ENDPOINT_ENV = "MMS_S3_ENDPOINT"
# What a Kubeflow gateway wants before it lets a request through (Dex/oauth2-proxy in front of Istio).
TOKEN_ENV, COOKIE_ENV = "MMS_INGRESS_TOKEN", "MMS_INGRESS_COOKIE"
SECRET_HEADERS = ("authorization", "cookie")


class NoServerPod(SetupError):
    """The server has no pod this moment (not made yet, or being replaced)."""


class Endpoint:
    """Where to send HTTP requests for a server: `base_url`, plus headers (`Host` through an
    ingress, and the session a Kubeflow gateway asks for).

    Unpacks as `(base_url, headers)`. `headers` is a fresh dict on every access, so a client
    library that adds its own headers to the dict it is given cannot change the Endpoint. The
    repr hides credentials.
    """

    def __init__(self, base_url: str, headers: Optional[dict[str, str]] = None) -> None:
        self.base_url = base_url
        self._headers = dict(headers or {})

    @property
    def headers(self) -> dict[str, str]:
        return dict(self._headers)

    @property
    def host(self) -> str:
        """The `Host` header sent through an ingress ("" when the address is the server's own)."""
        return self._headers.get("Host", "")

    def __iter__(self) -> Iterator[Any]:
        return iter((self.base_url, self.headers))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Endpoint) and (self.base_url, self._headers) == (other.base_url, other._headers)

    def __repr__(self) -> str:
        shown = {k: ("<hidden>" if k.lower() in SECRET_HEADERS else v) for k, v in self._headers.items()}
        return f"Endpoint(base_url={self.base_url!r}, headers={shown!r})"


def ingress_credentials() -> dict[str, str]:
    """Headers with the session the user gave for a Kubeflow gateway (`MMS_INGRESS_TOKEN` as a bearer
    token, `MMS_INGRESS_COOKIE` as the `authservice_session` cookie); empty when none is set."""
    headers = {}
    token = os.environ.get(TOKEN_ENV)
    if token:
        headers["Authorization"] = f"Bearer {token}"
    cookie = os.environ.get(COOKIE_ENV)
    if cookie:
        headers["Cookie"] = cookie if "=" in cookie else f"authservice_session={cookie}"
    return headers


def answers(url: str, headers: dict[str, str]) -> bool:
    """True only when Triton itself answers `/v2/health/live` (200). Istio's 403 `RBAC: access
    denied`, a gateway's 404 for an unknown Host, and a redirect to Dex's login all come from
    something in front of Triton, so such an address is not the server's."""
    try:
        answer = requests.get(f"{url}/v2/health/live", headers=headers, timeout=3, allow_redirects=False)
    except requests.RequestException:
        return False
    return answer.status_code == 200


def _gateway_refusal(url: str, headers: dict[str, str]) -> Optional[str]:
    """What the gateway says when it refuses (a redirect to a login, 401, 403), else None."""
    try:
        answer = requests.get(f"{url}/v2/health/live", headers=headers, timeout=3, allow_redirects=False)
    except requests.RequestException:
        return None
    if answer.is_redirect:
        return f"{answer.status_code} redirect to {answer.headers.get('Location', '?')[:80]}"
    if answer.status_code in (401, 403):
        return f"{answer.status_code} {answer.text.strip()[:80] or answer.reason}"
    return None


def ingress_address(api: client.ApiClient) -> Optional[str]:
    """`http://<ip or hostname>[:port]` of the ingress gateway's load balancer, if it has one."""
    core = client.CoreV1Api(api)
    for namespace, name in INGRESS_GATEWAYS:
        try:
            svc = core.read_namespaced_service(name, namespace)
        except ApiException:
            continue
        http2 = [p.port for p in (svc.spec.ports or []) if p.name == "http2"] if svc.spec else []
        port = f":{http2[0]}" if http2 and http2[0] != 80 else ""
        for ingress in (svc.status.load_balancer.ingress if svc.status and svc.status.load_balancer else None) or []:
            if ingress.ip or ingress.hostname:
                return f"http://{ingress.ip or ingress.hostname}{port}"
    return None


def _addresses(isvc: dict) -> tuple[str, str]:
    """(status.address.url without a trailing /, the Host of status.url)."""
    status = isvc.get("status") or {}
    address = ((status.get("address") or {}).get("url") or "").rstrip("/")
    return address, urlsplit(status.get("url") or "").hostname or ""


def url_path(isvc: dict) -> str:
    """The path of status.url, kept after the gateway's address: KServe's `pathTemplate` (`/serving/<ns>/<name>`,
    Kubeflow master's inferenceservice-config) routes by it; "" for the usual host-based URL."""
    return urlsplit(((isvc.get("status") or {}).get("url") or "")).path.rstrip("/")


def session_cookie(refusal: str) -> str:
    """The session cookie of the guard that refused: a redirect to Dex is oidc-authservice's (Kubeflow
    <= 1.8, `authservice_session`); a sign-in page or a 401 is oauth2-proxy's (1.9+, `oauth2_proxy_kubeflow`,
    kubeflow/manifests common/oauth2-proxy/base/oauth2_proxy.cfg at v1.10.0)."""
    return "authservice_session" if "redirect" in refusal and "/dex/" in refusal else "oauth2_proxy_kubeflow"


def _refused(name: str, url: str, refusal: str) -> SetupError:
    fix = _("sign in to Kubeflow and pass your session: set {cookie_env} to the value of your browser's "
            "`{session_cookie}` cookie, or {token_env} to a token that may access the namespace").format(
                cookie_env=COOKIE_ENV, session_cookie=session_cookie(refusal), token_env=TOKEN_ENV)
    if "RBAC: access denied" in refusal:  # Istio's answer: at the gateway, or at the predictor's sidecar
        fix = _("{fix}. If your session is already the namespace owner's, Istio refused it at the server's pod: on "
                "Kubeflow 1.10+ every request to the predictor needs an AuthorizationPolicy that allows it; ask your "
                "admin to apply manifests/predictor_authorization_policy.yaml (00_cluster_prep, step 5)").format(fix=fix)
    return SetupError(_("the ingress gateway at {url} refused the request for {name}: {refusal}").format(
                          url=url, name=name, refusal=refusal), fix)


class Target:
    """How this process reaches the cluster. Subclasses differ only where the place differs."""

    name = ""  # the `target` setting that selects it: "local" or "cluster"
    kind = ""  # "local", "in-cluster", "out-of-cluster"
    shell_env = ""  # the line that sets up a shell here for the equivalents (kubectl, curl, rclone)

    def api_client(self, identity: str = "admin", namespace: str = "") -> client.ApiClient:
        """An API client as `identity` (a learner: the `default-editor` of Profile `namespace`)."""
        raise NotImplementedError

    def default_namespace(self) -> str:
        """The namespace a learner works in when none is set."""
        return self.own_namespace() or DEFAULT_NAMESPACE

    def own_namespace(self) -> str:
        """The namespace this process runs in: a pod's; "" outside a cluster."""
        return ""

    def describe(self) -> str:
        """One line for a notebook's opening: where this runs and with which credentials."""
        raise NotImplementedError

    def unreachable_fix(self) -> str:
        """What to do when the API does not answer."""
        raise NotImplementedError

    def service_address(self, api: client.ApiClient, address: str, namespace: str) -> str:
        """The `host:port` this process uses for a Service address pods use (e.g. MinIO's)."""
        return address

    def server_endpoint(self, api: client.ApiClient, isvc: dict) -> Endpoint:
        """How this process reaches a Ready InferenceService's server."""
        raise NotImplementedError

    def container_log(self, api: client.ApiClient, group: ApiGroup, server: str, namespace: str,
                      container: str) -> str:
        """A container's log in the server's pod, as `kubectl logs <pod> <container>` shows it."""
        core = client.CoreV1Api(api)
        selector = f"{group.isvc_label}={server}"
        pods = [pod for pod in core.list_namespaced_pod(namespace, label_selector=selector).items
                if not pod.metadata.deletion_timestamp]
        if not pods:
            raise NoServerPod(_("no pod labelled {selector} in {namespace}").format(selector=selector, namespace=namespace),
                             _("`kubectl get pods -n {namespace}`: is the InferenceService running (02_server)?").format(
                                 namespace=namespace))
        # The body as sent: `kubernetes` 32-36 hand a log back as the repr of its bytes ("b'...\\n...'"),
        # and older releases parse a one-line JSON log (an agent's) into a dict. A Pending pod's log is empty.
        answer = core.read_namespaced_pod_log(pods[0].metadata.name, namespace, container=container,
                                              _preload_content=False)
        return answer.data.decode("utf-8", errors="replace")

    def gateway_credentials(self, api: client.ApiClient) -> dict[str, str]:
        """The headers with the session a guarded gateway asks for (what the user set)."""
        return ingress_credentials()

    def _through_gateway_forward(self, api: client.ApiClient, isvc: dict) -> Optional[Endpoint]:
        """The gateway reached through a port-forward this process starts (no load-balancer address)."""
        _, host = _addresses(isvc)
        forward = gateway_forward(api) if host else None
        if forward is None:
            return None
        headers = {"Host": host, **self.gateway_credentials(api)}
        if answers(forward.url + url_path(isvc), headers):
            return Endpoint(forward.url + url_path(isvc), headers)
        refusal = _gateway_refusal(forward.url, headers)
        if refusal:
            raise _refused(isvc["metadata"]["name"], forward.url, refusal)
        return None

    def ingress_base(self, api: client.ApiClient) -> Optional[str]:
        """The ingress gateway's address: MMS_INGRESS_URL, else its load balancer's (read with `api`)."""
        return os.environ.get(INGRESS_ENV, "").rstrip("/") or ingress_address(api)

    def _through_ingress(self, api: client.ApiClient, isvc: dict) -> Optional[Endpoint]:
        """The guide's way: the ingress gateway's address with the `Host` of status.url."""
        _, host = _addresses(isvc)
        base = self.ingress_base(api)
        if not (base and host):
            return None
        headers = {"Host": host, **self.gateway_credentials(api)}
        if answers(base + url_path(isvc), headers):
            return Endpoint(base + url_path(isvc), headers)
        refusal = _gateway_refusal(base, headers)
        if refusal:
            raise _refused(isvc["metadata"]["name"], base, refusal)
        return None


class Local(Target):
    """The embedded stack: its kubeconfig(s) in the state folder, Services resolved to loopback."""

    name, kind = "local", "local"
    shell_env = 'eval "$(python -m helpers.local env)"  # once per shell: kubectl, curl and rclone settings'

    def __init__(self, state: Optional[Path] = None) -> None:
        self.state = Path(state) if state else config.state_dir()

    def kubeconfig(self, identity: str = "admin", namespace: str = "") -> Path:
        return config.identity_kubeconfig(identity, namespace or DEFAULT_NAMESPACE, self.state)

    def api_client(self, identity: str = "admin", namespace: str = "") -> client.ApiClient:
        if identity not in IDENTITIES:
            raise SetupError(_("identity must be one of {identities}, not {identity!r}").format(
                                 identities=', '.join(IDENTITIES), identity=identity), _("fix the setting"))
        path = self.kubeconfig(identity, namespace)
        if not path.exists():
            if identity == "admin":
                raise SetupError(_("the local stack is not running (no kubeconfig in {state})").format(state=self.state),
                                 _("start it with `python -m helpers.local up` (or `make up`)"))
            raise SetupError(_("the local stack has no credentials for the {identity} of namespace {namespace} yet "
                               "({path})").format(
                                 identity=identity, namespace=namespace or DEFAULT_NAMESPACE, path=path),
                             _("run 00_cluster_prep first: its Profile makes the namespace and the learner's service account "
                               "(default-editor), as Kubeflow's profile controller does"))
        return kconfig.new_client_from_config(config_file=str(path))

    def describe(self) -> str:
        return _("local (state folder {state})").format(state=self.state)

    def _dns(self) -> client.ApiClient:
        """The client that resolves Service names here: cluster DNS answers every pod, whatever its
        RBAC (a learner may not read Services in `kubeflow`, yet `minio-service.kubeflow` resolves)."""
        if getattr(self, "_dns_client", None) is None:
            self._dns_client = self.api_client("admin")
        return self._dns_client

    def gateway_credentials(self, api: client.ApiClient) -> dict[str, str]:
        """What the user set, else the session the stack published for the identity `api` authenticates
        as (found by its token), as a browser signed in as that identity sends it. Never the token:
        a Kubeflow gateway refuses a service account's token unless an AuthorizationPolicy names it."""
        given = ingress_credentials()
        if given:
            return given
        bearer = api.configuration.get_api_key_with_prefix("BearerToken", alias="authorization") or ""
        token = bearer.split(" ", 1)[-1].strip()
        for folder in sorted((self.state / "identities").glob("*/")):
            try:
                if token and (folder / "token").read_text().strip() == token:
                    cookie = folder / "cookie"
                    return {"Cookie": cookie.read_text().strip()} if cookie.exists() else {}
            except OSError:
                continue
        return {}

    def unreachable_fix(self) -> str:
        return _("restart the local stack: `python -m helpers.local up` (or `make up`)")

    def service_address(self, api: client.ApiClient, address: str, namespace: str) -> str:
        return resolve_address(self._dns(), address, namespace)

    def ingress_base(self, api: client.ApiClient) -> Optional[str]:
        # The gateway's address as every pod knows it: a learner may not read Services in istio-system.
        return super().ingress_base(self._dns())

    def server_endpoint(self, api: client.ApiClient, isvc: dict) -> Endpoint:
        # The gateway's address as every pod knows it (a learner may not read Services in istio-system);
        # the session sent is the identity's own.
        found = self._through_ingress(api, isvc)
        if found:
            return found
        address, _host = _addresses(isvc)
        if not address:
            meta = isvc["metadata"]
            raise SetupError(_("InferenceService {namespace}/{name} has no status.address.url").format(
                                 namespace=meta['namespace'], name=meta['name']),
                             _("check the local controller: `python -m helpers.local logs controller`"))
        return Endpoint(resolve_url(self._dns(), address, isvc["metadata"]["namespace"]), {})


class InCluster(Target):
    """A pod in the cluster (a Kubeflow Notebook): its service account, its namespace, cluster DNS."""

    name, kind = "cluster", "in-cluster"

    def __init__(self, account_dir: Path = SERVICE_ACCOUNT_DIR) -> None:
        self.account_dir = account_dir

    def api_client(self, identity: str = "admin", namespace: str = "") -> client.ApiClient:
        kconfig.load_incluster_config()
        return client.ApiClient()

    def own_namespace(self) -> str:
        try:
            return (self.account_dir / "namespace").read_text().strip()
        except OSError:
            return ""

    def describe(self) -> str:
        return _("cluster, in a pod (service account of namespace {default_namespace})").format(
                   default_namespace=self.default_namespace())

    def unreachable_fix(self) -> str:
        return _("check that the pod may reach the API server (`kubectl cluster-info` in a terminal of this pod)")

    def server_endpoint(self, api: client.ApiClient, isvc: dict) -> Endpoint:
        # Inside the mesh the cluster-local address needs no session; the gateway is the fallback.
        address, host = _addresses(isvc)
        if address and answers(address, {}):
            return Endpoint(address, {})
        found = self._through_ingress(api, isvc)
        if found:
            return found
        namespace, gateway = INGRESS_GATEWAYS[0]
        base = f"http://{gateway}.{namespace}.svc.cluster.local"
        headers = {"Host": host, **ingress_credentials()}
        if host and answers(base + url_path(isvc), headers):
            return Endpoint(base + url_path(isvc), headers)
        refusal = _gateway_refusal(base, headers) if host else None
        if refusal:
            raise _refused(isvc["metadata"]["name"], base, refusal)
        raise SetupError(_("neither {address} nor the ingress gateway answers for {name}").format(
                             address=address or 'status.address.url', name=isvc['metadata']['name']),
                         _("`kubectl describe inferenceservice {name} -n {namespace}` and the server pod's events say "
                           "why").format(
                             name=isvc['metadata']['name'], namespace=isvc['metadata']['namespace']))


class OutOfCluster(Target):
    """A kubeconfig outside the cluster: Services through a load balancer, an address you give, or a
    port-forward."""

    name, kind = "cluster", "out-of-cluster"

    def api_client(self, identity: str = "admin", namespace: str = "") -> client.ApiClient:
        try:
            return kconfig.new_client_from_config()
        except kconfig.ConfigException as exc:
            raise SetupError(_("no Kubernetes configuration found ({exc})").format(exc=exc),
                             _("run inside Kubeflow Notebooks, set KUBECONFIG, or use target='local'")) from None

    def describe(self) -> str:
        return _("cluster, from outside it (kubeconfig {kubeconfig})").format(
            kubeconfig=os.environ.get("KUBECONFIG") or "~/.kube/config")

    def unreachable_fix(self) -> str:
        return _("check your kubeconfig (`kubectl cluster-info`), or run inside Kubeflow Notebooks")

    def service_address(self, api: client.ApiClient, address: str, namespace: str) -> str:
        """MMS_S3_ENDPOINT, else a port-forward to a pod behind the Service, started here."""
        override = os.environ.get(S3_ENDPOINT_ENV)
        if override:
            return override.removeprefix("http://").removeprefix("https://").rstrip("/")
        try:
            forward = portforward.forward_address(api, address, namespace)
        except SetupError as exc:
            raise SetupError(_("{address} is a cluster address, this notebook runs outside the cluster, and a port-forward "
                               "to it failed: {cause}").format(address=address, cause=exc.cause),
                             _("run `kubectl port-forward svc/minio-service -n kubeflow 9000:9000` and set "
                               "{s3_endpoint_env}=127.0.0.1:9000 before starting Jupyter").format(
                                 s3_endpoint_env=S3_ENDPOINT_ENV)) from None
        portforward.announce(forward, address)
        return forward.address

    def server_endpoint(self, api: client.ApiClient, isvc: dict) -> Endpoint:
        """The gateway's load-balancer address (or MMS_INGRESS_URL), else a port-forward to a gateway pod."""
        found = self._through_ingress(api, isvc) or self._through_gateway_forward(api, isvc)
        if found:
            return found
        meta = isvc["metadata"]
        raise SetupError(
            _("found no way to reach InferenceService {namespace}/{name} from here").format(
                namespace=meta['namespace'], name=meta['name']),
            _("as the guide suggests: `kubectl port-forward svc/istio-ingressgateway -n istio-system 8080:80` and set "
              "{ingress_env}=http://127.0.0.1:8080").format(ingress_env=INGRESS_ENV))


def gateway_forward(api: client.ApiClient) -> Optional[portforward.PortForward]:
    """A port-forward to a pod of the first ingress gateway Service that has one (its `http2` port)."""
    for namespace, name in INGRESS_GATEWAYS:
        try:
            forward = portforward.forward_service(api, namespace, name, INGRESS_PORT)
        except SetupError:
            continue
        portforward.announce(forward, f"ingress gateway {namespace}/{name}")
        return forward
    return None


def select(name: Optional[str] = None) -> Target:
    """The Target for the `target` setting (`local` or `cluster`; see `helpers.core.config.target`)."""
    if config.target(name) == "local":
        return Local()
    return InCluster() if os.environ.get("KUBERNETES_SERVICE_HOST") else OutOfCluster()


def resolve_settings(params: Mapping[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    """`helpers.core.settings.resolve_with_sources` of `params`, the per-learner namespace being the one this
    process runs in on the chosen target (`Target.own_namespace`): (values, where each came from)."""
    return resolve_with_sources(params, own_namespace=lambda name: select(name).own_namespace())
