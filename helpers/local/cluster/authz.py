"""The gateway's guard: who may call an InferenceService through the local ingress gateway.

On Kubeflow 1.3+ the Istio ingress gateway asks an auth service about every request, and the profile
namespace's Istio AuthorizationPolicy
`ns-owner-access-istio` answers 403 `RBAC: access denied` to an identity it does not allow.
The local nginx does the same with `auth_request` to this small HTTP server, which the
controller runs on 127.0.0.1:

1. who: a session cookie is looked up among the sessions the stack published
   (`identity.sessions`); a bearer token goes to the apiserver's TokenReview, where the release
   accepts tokens at all. Kubeflow 1.3's oidc-authservice (image 6ac9400) knows only its session
   cookie: service-account tokens came with image e236439 (kubeflow/manifests#2150, 2022, after
   1.5), so there a bearer token is no session. Kubeflow 1.10/1.11 (oauth2-proxy, and Istio's
   RequestAuthentication `dex-jwt` at the ingress gateway) checks a bearer token before any
   cookie. Their default install (`example/` uses the `m2m-dex-only` overlay of
   common/oauth2-proxy) names one issuer, Dex's (`DEX_ISSUER`): a JWT of any other issuer, such as
   a Kubernetes service-account token, gets Envoy's 401 `Jwt issuer is not configured`; a token
   that is no JWT, or does not verify, 401 `Jwt verification fails`. Only the `m2m-dex-and-kind`
   and `m2m-dex-and-eks` overlays add the cluster's issuer (`m2m-token-issuer`), which no profile
   models, and the local stack signs no Dex tokens: here every bearer token is refused;
2. may they: the profile namespace's `ns-owner-access-istio` lets through the owner's session and
   KFAM's contributors, never a service account, unless an AuthorizationPolicy the admin adds
   names it (Kubeflow's own KServe test adds one; the local stack has no Istio to add it to, so
   it refuses them, as a cluster without that policy does). A session passes when a
   SubjectAccessReview allows its user `get inferenceservices` in the InferenceService's
   namespace (the owner's `namespaceAdmin`, a contributor's binding).

Answers (`/check`): 200 go on; 401 no session (nginx then asks `/login` for the guard's own
answer); 403 denied (nginx answers `RBAC: access denied`, as Istio does). The no-session answer
is the release's:

- authservice (Kubeflow 1.3): a 302 to Dex, `/dex/auth?client_id=kubeflow-oidc-authservice&
  redirect_uri=%2Flogin%2Foidc&...`, whatever the request (a bad token is no session);
- oauth2-proxy (Kubeflow 1.10/1.11, `skip_provider_button = false`): its sign-in page with 403,
  or 401 for a JSON client (`Accept: application/json`); a bearer token gets Istio's
  RequestAuthentication answer, 401 `Jwt issuer is not configured` for a JWT whose issuer is not
  Dex's, else 401 `Jwt verification fails`.

One place stays friendlier than a real cluster: a cluster admin's session passes the gateway's
own check (the SubjectAccessReview allows `system:masters`), where Istio would let only the owner
and contributors through.

On profiles with a mesh (`Profile.mesh`, Kubeflow 1.10+), a request that passed is then judged as
the predictor's sidecar judges it (`mesh.decide`): it arrives through `knative-local-gateway`, with
`kubeflow-userid` set to the session's user. The cluster-local address (`X-Mms-Hop: local-gateway`,
nginx's own port per server) is judged the same way without any session: no login guards it, and
the `kubeflow-userid` header is whatever the client sent.

Decisions are cached for a few seconds, per credential and namespace.
"""
from __future__ import annotations

import base64
import json
import logging
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Optional
from urllib.parse import quote

from kubernetes import client

from helpers.local.cluster import identity, mesh
from helpers.local.stack.releases import Profile

log = logging.getLogger("gateway")
CACHE_SECONDS = 5.0
NAMESPACE_HEADER = "X-Mms-Namespace"
WORKLOAD_HEADER = "X-Mms-Workload"  # gateway.WORKLOAD_HEADER
HOP_HEADER = "X-Mms-Hop"  # gateway.HOP_HEADER
DENIED_BODY = "RBAC: access denied"
SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"
# The one issuer of the default install's RequestAuthentication `dex-jwt` (kubeflow/manifests v1.10.0-v1.11.0
# common/oauth2-proxy/components/istio-external-auth/requestauthentication.dex-jwt.yaml, overlay m2m-dex-only).
DEX_ISSUER = "http://dex.auth.svc.cluster.local:5556/dex"
TRUSTED_ISSUERS = (DEX_ISSUER,)
UNKNOWN_ISSUER = "Jwt issuer is not configured"  # Envoy's jwt_authn answer for an issuer no rule names
BAD_JWT = "Jwt verification fails"
DEX_LOGIN = ("/dex/auth?client_id=kubeflow-oidc-authservice&redirect_uri=%2Flogin%2Foidc"
             "&response_type=code&scope=profile+email+groups+openid&state={state}")
SIGN_IN_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Sign In</title></head>
<body><section><form method="GET" action="/oauth2/start">
<input type="hidden" name="rd" value="{rd}">
<button type="submit">Sign in with Dex</button></form></section></body></html>
"""


def jwt_issuer(token: str) -> Optional[str]:
    """The `iss` claim of a JWT (read, not verified: Envoy picks the rule by it first), or None if `token`
    is no JWT with an issuer."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, TypeError):
        return None
    issuer = payload.get("iss") if isinstance(payload, dict) else None
    return issuer if isinstance(issuer, str) and issuer else None


class Authorizer:
    """Authenticates and authorizes gateway requests against the stack's apiserver."""

    def __init__(self, api: client.ApiClient, profile: Profile, state_root: Path) -> None:
        self.authn = client.AuthenticationV1Api(api)
        self.authz = client.AuthorizationV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)
        self.profile = profile
        self.state_root = state_root
        self._cache: dict[tuple, tuple[float, object]] = {}
        self._lock = threading.Lock()
        self.server: Optional[ThreadingHTTPServer] = None

    # --- decisions ---------------------------------------------------------------------------
    def _cached(self, key: tuple, compute, seconds: float = CACHE_SECONDS):
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(key)
            if hit and hit[0] > now:
                return hit[1]
        value = compute()
        with self._lock:
            self._cache[key] = (now + seconds, value)
        return value

    def who(self, authorization: str, cookie: str) -> Optional[tuple[str, list[str]]] | str:
        """(user, groups) of the request, None without a session, "bad-token" for a token that is none,
        "unknown-issuer" for a JWT of an issuer the gateway's RequestAuthentication does not name."""
        if authorization.lower().startswith("bearer ") and self.profile.gateway_auth != "authservice":
            token = authorization.split(None, 1)[1].strip()
            issuer = jwt_issuer(token)  # Istio's RequestAuthentication reads the JWT before anyone asks who
            if issuer is None:
                return "bad-token"
            if issuer not in TRUSTED_ISSUERS:
                return "unknown-issuer"
            return self._cached(("token", token), lambda: self._review(token))
        sessions = identity.sessions(self.state_root)
        for part in cookie.split(";"):
            who = sessions.get(part.strip())
            if who:
                return who["user"], list(who.get("groups", []))
        return None

    def _review(self, token: str):
        review = self.authn.create_token_review(client.V1TokenReview(spec=client.V1TokenReviewSpec(token=token)))
        status = review.status
        if not (status and status.authenticated and status.user):
            return "bad-token"
        return status.user.username, list(status.user.groups or [])

    def may(self, user: str, groups: list[str], namespace: str) -> bool:
        """SubjectAccessReview: may `user` get InferenceServices in `namespace`?"""
        def review() -> bool:
            spec = client.V1SubjectAccessReviewSpec(user=user, groups=groups, resource_attributes=client.V1ResourceAttributes(
                namespace=namespace, verb="get", group=self.profile.group, resource="inferenceservices"))
            return bool(self.authz.create_subject_access_review(client.V1SubjectAccessReview(spec=spec)).status.allowed)
        return self._cached(("sar", user, tuple(groups), namespace), review)

    def check(self, namespace: str, authorization: str, cookie: str) -> tuple[int, str]:
        """(status for nginx, why): 200 allowed, 401 no session (or a bad token), 403 denied."""
        found = self.who(authorization, cookie)
        if found is None:
            return 401, "no session"
        if found in ("bad-token", "unknown-issuer"):
            return 401, found
        user, groups = found
        if user.startswith(SERVICE_ACCOUNT_PREFIX):  # ns-owner-access-istio names people, not accounts
            return 403, user
        if self.may(user, groups, namespace):
            return 200, user
        return 403, user

    # --- the mesh at the predictor ---------------------------------------------------------------
    def _policies(self) -> list[dict]:
        """Every AuthorizationPolicy (cached a second: Istio, too, takes a moment to push a change)."""
        def read() -> list[dict]:
            return self.custom.list_cluster_custom_object(mesh.GROUP, mesh.VERSION, mesh.PLURAL)["items"]
        return self._cached(("policies",), read, seconds=1.0)

    def _predictor_labels(self, namespace: str, isvc: str) -> dict[str, str]:
        """The labels of the InferenceService's predictor pod (what a policy's selector matches)."""
        def read() -> dict[str, str]:
            selector = f"{self.profile.group}/inferenceservice={isvc},component=predictor"
            pods = self.core.list_namespaced_pod(namespace, label_selector=selector).items
            return dict(pods[0].metadata.labels or {}) if pods else {f"{self.profile.group}/inferenceservice": isvc}
        return self._cached(("labels", namespace, isvc), read)

    def sidecar(self, namespace: str, isvc: str, uri: str, method: str, headers: dict[str, str]) -> tuple[int, str]:
        """(200 or 403, why): the predictor's sidecar on a request through knative-local-gateway."""
        if not self.profile.mesh or not isvc:
            return 200, "no mesh"
        request = mesh.Request(uri, method or "GET", headers, mesh.THROUGH_LOCAL_GATEWAY)
        decision = mesh.decide(self._policies(), namespace, self._predictor_labels(namespace, isvc), request)
        return (200 if decision.allowed else 403), decision.why

    def login(self, uri: str, accept: str, authorization: str) -> tuple[int, dict[str, str], str]:
        """The guard's answer to a request without a session: (status, headers, body)."""
        if self.profile.gateway_auth == "authservice":
            return 302, {"Location": DEX_LOGIN.format(state=secrets.token_urlsafe(16))}, ""
        if authorization.lower().startswith("bearer "):  # Istio's RequestAuthentication refused it
            parts = authorization.split(None, 1)
            issuer = jwt_issuer(parts[1].strip()) if len(parts) == 2 else None
            unknown = issuer is not None and issuer not in TRUSTED_ISSUERS
            return 401, {"Content-Type": "text/plain"}, UNKNOWN_ISSUER if unknown else BAD_JWT
        if "application/json" in accept:
            return 401, {"Content-Type": "application/json"}, json.dumps({"code": 401, "message": "Unauthorized"})
        return 403, {"Content-Type": "text/html; charset=utf-8"}, SIGN_IN_PAGE.format(rd=quote(uri, safe="/"))

    # --- the HTTP server nginx asks --------------------------------------------------------------
    def start(self, port: int = 0) -> int:
        """Serve on 127.0.0.1:`port` (0: a free one) in a thread; returns the port."""
        authorizer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                auth, cookie = self.headers.get("Authorization", ""), self.headers.get("Cookie", "")
                if self.headers.get("X-Mms-Phase") == "login":
                    status, headers, body = authorizer.login(self.headers.get("X-Original-URI", "/"),
                                                             self.headers.get("Accept", ""), auth)
                else:
                    namespace = self.headers.get(NAMESPACE_HEADER, "")
                    workload = self.headers.get(WORKLOAD_HEADER, "")
                    uri, method = self.headers.get("X-Original-URI", "/"), self.headers.get("X-Original-Method", "GET")
                    try:
                        if self.headers.get(HOP_HEADER) == "local-gateway":  # the cluster-local address: no login
                            status, who = authorizer.sidecar(namespace, workload, uri, method, dict(self.headers))
                        else:
                            status, who = authorizer.check(namespace, auth, cookie)
                            if status == 200 and workload:  # on through knative-local-gateway, with the user's header
                                status, who = authorizer.sidecar(namespace, workload, uri, method,
                                                                 {mesh.USERID_HEADER: who})
                    except Exception as exc:  # noqa: BLE001 - the apiserver away: fail closed, say why
                        log.warning("gateway auth: cannot decide for namespace %s: %s", namespace, exc)
                        status, who = 403, "(undecided)"
                    if status == 403:
                        log.info("gateway auth: %s may not reach namespace %s: %s", who, namespace, DENIED_BODY)
                    headers, body = {}, ""
                data = body.encode()
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_args) -> None:  # tokens travel in headers: log nothing per request
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True, name="gateway-authz").start()
        return self.server.server_address[1]

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
