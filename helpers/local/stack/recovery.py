"""What each part of the local stack does after it is killed: comes back by itself, or stays down
because that is what the real release does (then the chaos benchmark says so instead of counting a
failure).

- The stack's processes (S3, etcd, kube-apiserver, kube-controller-manager, the gateway's nginx,
  the controller) are restarted by the supervisor with back-off, as a kubelet restarts a
  Deployment's pod; Triton and the agent by the controller, as the kubelet restarts a pod's
  containers.
- The supervisor itself plays the kubelet: nothing restarts it; `python -m helpers.local up`
  starts it again, and everything else keeps running and serving meanwhile.
- The models Triton held after Triton restarts: whether the agent loads them again is the agent's
  behaviour, per release. No release's agent does (KFServing 0.5.1, KServe 0.14.1-0.15.2: loads on
  models.json events and at the pod's start only), so the models stay unloaded, their TrainedModels
  Ready, until the pod is replaced (`kubectl delete pod`) or their spec changes; the doctor names
  it ("Ready TrainedModels served by Triton"). `MMS_AGENT_RELOADS=1` makes the local agent reload
  them from disk (`Profile.agent_reloads`).
"""
from __future__ import annotations

from dataclasses import dataclass

from helpers.local.stack.releases import Profile

SERVER_ROLES = ("triton", "agent")
SUPERVISOR = "supervisor"


@dataclass(frozen=True)
class Expected:
    """After `part` is killed: does it come back by itself, do Triton's models, and why not where not."""

    part: str
    comes_back: bool
    models_come_back: bool
    why: str = ""


def after_kill(profile: Profile, part: str) -> Expected:
    if part == SUPERVISOR:
        return Expected(part, False, True, "nothing restarts the supervisor (it plays the kubelet); "
                                           "`python -m helpers.local up` starts it again, and every part keeps "
                                           "running and serving meanwhile")
    if part == "triton" and not profile.agent_reloads:
        return Expected(part, True, False, f"{profile.release}'s agent never loads a model again after Triton "
                                           "restarts: the models stay unloaded (their TrainedModels Ready) until "
                                           "the pod is replaced or their spec changes")
    return Expected(part, True, True)
