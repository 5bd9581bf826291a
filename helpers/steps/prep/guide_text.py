"""Which shown commands are the guide's own, read from the guide's text (`data/guide_commands.md`).

Used by 00-02 to label each shell block truthfully: a block whose every command line is, character
for character, a command of the guide is shown as the guide's (`show_guide`); any other as adapted,
with the reason (`show_adapted`). So a block rendered for other settings (another namespace, server
or API group) is never called verbatim.
"""
from __future__ import annotations

import functools
import re

from helpers.core.i18n import _
from helpers.core.resources import data_path
from helpers.core.show import show_adapted, show_guide

_COMMAND = re.compile(r"^(kubectl |curl |wget |chmod |mkdir |cd |tar |mv |\./mc |\./gsutil |\(cd |[A-Z_]+=)")


@functools.lru_cache(maxsize=1)
def guide_commands() -> tuple[str, ...]:
    """Every command line of the guide's code blocks, in order (sample output and comments left out)."""
    text = data_path("guide_commands.md").read_text(encoding="utf-8")
    found = []
    for block in re.findall(r"^```bash\n(.*?)^```", text, re.M | re.S):
        pending = ""
        for line in block.splitlines():
            stripped = line.strip()
            if pending:
                pending += " " + stripped
                if not stripped.endswith("\\"):
                    found.append(re.sub(r"\s*\\\s+", " ", pending))
                    pending = ""
            elif _COMMAND.match(stripped):
                if stripped.endswith("\\"):
                    pending = stripped
                else:
                    found.append(stripped)
    return tuple(found)


def command_lines(block: str) -> list[str]:
    """The command lines of a shell block (comment lines and blank lines left out)."""
    return [line.strip() for line in block.splitlines() if line.strip() and not line.strip().startswith("#")]


def is_guide(block: str) -> bool:
    """Whether every command line of `block` is one of the guide's commands, verbatim."""
    lines = command_lines(block)
    return bool(lines) and all(line in guide_commands() for line in lines)


def guide_line(pattern: str) -> str:
    """The guide's first command line that matches the regular expression `pattern` ("" if none)."""
    return next((line for line in guide_commands() if re.search(pattern, line)), "")


def show_step(block: str, why: str) -> None:
    """The guide's commands as the guide writes them when `block` is verbatim, else adapted, with `why`."""
    if is_guide(block):
        show_guide(block)
    else:
        show_adapted(block, why)


def reason(key: str) -> str:
    """Why a shown block of 00-02 differs from the guide, or what a block not in the guide is for (one line,
    in the learner's language); the notebooks name the reason, the words live here."""
    reasons = {
        "api_group": _("the resource named with its API group: where KFServing and KServe are both installed, "
                       "kubectl may read the short name as the other's"),
        "gateway": _("Kubeflow's gateway istio-ingressgateway instead of kfserving-ingressgateway (KFServing 0.5's "
                     "own install), and the resource named with its API group"),
        "ingress": _("the gateway's address as this target reaches it; the comment lines say what changed"),
        "knative": _("the values of manifests/knative_config_deployment_patch.yaml, not the guide's"),
        "preflight": _("what the checks asked the API server"),
        "namespace": _("the namespace the profile controller made"),
        "role": _("a Role for default-editor where Kubeflow's role lacks trainedmodels (before KServe 0.15)"),
        "mesh": _("the Istio AuthorizationPolicies between the gateways and the predictor (Kubeflow 1.10+)"),
        "pod": _("what the cluster made: the server's pod, its containers and the agent's env names"),
        "expose": _("the node port and the pod's IP read into variables, and the Service deleted again"),
        "port_forward": _("through the API server, so it works wherever kubectl does"),
    }
    return reasons[key]
