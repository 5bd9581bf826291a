"""Stand-ins for the apiserver in unit tests of the controller's parts."""
from __future__ import annotations

from types import SimpleNamespace
from typing import Optional


class PodsKube:
    """Just what `Pods._create` reads and writes: KServe's inferenceservice-config, the namespace's labels
    (Istio's injection switch) and the new pod, kept in `created`."""

    def __init__(self, config: dict, labels: Optional[dict] = None) -> None:
        self.created: list[dict] = []
        self.core = SimpleNamespace(read_namespaced_config_map=object(), read_namespace=object(),
                                    create_namespaced_pod=self._create)
        self._config, self._labels = config, labels or {}

    def read(self, reader, name: str, namespace: str = ""):
        if reader is self.core.read_namespace:
            return SimpleNamespace(metadata=SimpleNamespace(labels=self._labels))
        if namespace in ("kfserving-system", "kubeflow"):
            return SimpleNamespace(data=self._config)
        return None

    def _create(self, namespace: str, body: dict):
        self.created.append(body)
        return SimpleNamespace(metadata=SimpleNamespace(name=body["metadata"]["name"]))
