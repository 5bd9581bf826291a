"""How a notebook reaches its server, and the curl line for each request it sends.

Explained in 02_server. Which address works depends on where the notebook runs; that is
`helpers.clients.target`'s choice: the ingress gateway with the `Host` of `status.url` (the guide's
`SERVICE_HOSTNAME` + `CLUSTER_IP`), or the cluster-local `status.address.url`.
"""
from __future__ import annotations

import os
import re
from typing import Optional
from urllib.parse import urlsplit

from kubernetes import client

from helpers.clients.inference import ISVC, require_ready
from helpers.clients.target import COOKIE_ENV, TOKEN_ENV, Endpoint, Target
from helpers.core.constants import ApiGroup
from helpers.core.i18n import _

__all__ = ["Endpoint", "server_url", "curl"]
# How curl shows a credential: the variable that holds it, never its value.
_SHOWN = {"authorization": f"Bearer ${{{TOKEN_ENV}}}", "cookie": f"${{{COOKIE_ENV}}}"}


def server_url(api: client.ApiClient, place: Target, group: ApiGroup, name: str, namespace: str) -> Endpoint:
    """How this notebook reaches the Ready InferenceService `name`: `(base_url, headers)`."""
    return place.server_endpoint(api, require_ready(api, group, ISVC, name, namespace, "02_server"))


def curl(endpoint: Endpoint, path: str, method: str = "GET", data_file: Optional[str] = None,
         guide: bool = True) -> str:
    """The curl command for a request; with `guide`, the guide's form through the ingress, runnable as shown.

    The guide's variables: `SERVICE_HOSTNAME` and `CLUSTER_IP` (set as 02_server shows), and
    `MODEL_NAME` for a model's path. An absolute `data_file` is shown as the guide has it,
    `-d @./${MODEL_NAME}.json`, after a `cd` to its folder. When the endpoint is the ingress on
    another port than 80, the line that runs here uses `${MMS_INGRESS_URL}` (`helpers.local env`).
    """
    model = re.match(r"^/v2/models/([^/]+)/", path)
    lines = []
    if model and guide:
        lines.append(f"MODEL_NAME={model.group(1)}")
        path = path.replace(f"/v2/models/{model.group(1)}/", "/v2/models/${MODEL_NAME}/", 1)
    if data_file:
        # `curl -d` alone sends `application/x-www-form-urlencoded`, and Triton 2.51 crashes
        # (Signal 11) parsing a large body of that type (inception's 5.7 MB): say it is JSON.
        lines.append("# " + _("-H Content-Type: JSON, not the form type curl -d sends (Triton 2.51 crashes on a "
                              "large form body)"))
    if data_file and os.path.isabs(data_file):
        folder, name = os.path.split(data_file)
        lines.append(f"cd {folder}  # " + _("where this notebook wrote {name}").format(name=name))
        data_file = "./${MODEL_NAME}.json" if model and guide and name == f"{model.group(1)}.json" else f"./{name}"

    def command(base: str, headers: dict[str, str], verbose: bool) -> str:
        parts = ["curl"] + (["-v"] if verbose else [])
        if method != "GET":
            parts += ["-X", method]
        if data_file:
            headers = {"Content-Type": "application/json", **headers}
        parts += [f'-H "{k}: {_SHOWN.get(k.lower(), v)}"' for k, v in headers.items()]
        parts.append(f"{base}{path}")
        if data_file:
            parts += ["-d", f"@{data_file}"]
        return " ".join(parts)

    if not guide:
        return command(endpoint.base_url, endpoint.headers, False)
    session = {k: v for k, v in endpoint.headers.items() if k.lower() in _SHOWN}
    theirs = command("http://${CLUSTER_IP}", {"Host": "${SERVICE_HOSTNAME}", **session}, True)
    through_ingress = bool(endpoint.headers.get("Host"))
    if through_ingress and urlsplit(endpoint.base_url).port in (None, 80):
        return "\n".join(lines + ["# " + _("the guide's command, through the ingress gateway:"), theirs])
    if through_ingress:
        mine = command("${MMS_INGRESS_URL}", {"Host": "${SERVICE_HOSTNAME}", **session}, True)
        note = "# " + _("here the gateway listens on {url}, which MMS_INGRESS_URL holds:").format(url=endpoint.base_url)
    else:
        mine = command(endpoint.base_url, endpoint.headers, False)
        note = "# " + _("the same request on this target:")
    return "\n".join(lines + ["# " + _("the guide, through the ingress:"), theirs, note, mine])
