"""What the agent does where the releases' agents and this project's friendlier one part ways.

By default the local agent does what the stack's release does (`--release TAG`, passed by the
controller from the version profile); `--friendly` (MMS_AGENT_FRIENDLY=1, for benchmarks) turns on
what no release has. Read in `pkg/agent/` at each tag (docs/releases.md has the rows):

- every release tries each download and each load once: a failure is logged and the model stays
  unloaded until the spec changes or the pod is replaced (`modelProcessor`, kf v0.5.1 and ks
  v0.14.1-v0.15.2 `puller.go`);
- every release lists a model with one `ListObjects` (v1) call, so one page of at most 1000 keys,
  with the storageUri's prefix as written: `s3://b/cifar10` also matches `cifar10-old/...`, whose
  keys land under `<model>/-old/` (`GetAllObjects`, `storage/s3.go`);
- KFServing 0.5.1 turns a directory-marker key (one ending in "/") into an empty file, so the next
  key under it fails with `not a directory` (kserve/kserve#1769; KServe skips such keys from
  v0.7.0 on);
- KFServing 0.5.1 has no S3 provider without AWS_ENDPOINT_URL and panics on the first download
  (kserve/kserve#1317; fixed in v0.6.0);
- KFServing 0.5.1 logs a refused load's body with `%v` of a byte slice (`[123 34 ...]`), KServe
  0.14+ with `%s`.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

FRIENDLY_ENV = "MMS_AGENT_FRIENDLY"


@dataclass(frozen=True)
class Behaviour:
    """One agent's answers where releases differ; the defaults are KServe 0.14.1-0.15.2's."""

    release: str = "v0.15.2"
    retry: bool = False  # friendly only: retry failed operations with backoff
    all_pages: bool = False  # friendly only: follow the listing past 1000 keys
    prefix_as_folder: bool = False  # friendly only: `s3://b/cifar10` means `cifar10/` and nothing beside it
    markers_as_files: bool = False  # KFServing 0.5.1
    panic_without_endpoint: bool = False  # KFServing 0.5.1
    body_as_bytes: bool = False  # KFServing 0.5.1's `resp:%v` of a []byte

    @property
    def friendly(self) -> bool:
        return self.retry

    @property
    def go_module(self) -> str:
        """The Go module its panics name."""
        return "github.com/kubeflow/kfserving" if self.release.startswith("v0.5") else "github.com/kserve/kserve"


_KFSERVING_05 = dict(markers_as_files=True, panic_without_endpoint=True, body_as_bytes=True)
RELEASES = {
    "v0.5.1": Behaviour("v0.5.1", **_KFSERVING_05),
    "v0.14.1": Behaviour("v0.14.1"),
    "v0.15.0": Behaviour("v0.15.0"),
    "v0.15.2": Behaviour("v0.15.2"),
}


def for_release(release: str, friendly: bool = False) -> Behaviour:
    """The agent of `release` (a tag in RELEASES; another KServe tag behaves as 0.15.2), or the friendly
    one: it retries, lists every page, reads the prefix as a folder, skips directory markers and
    reports a missing endpoint as an error."""
    found = RELEASES.get(release) or replace(RELEASES["v0.15.2"], release=release)
    if friendly:
        return replace(found, retry=True, all_pages=True, prefix_as_folder=True, markers_as_files=False,
                       panic_without_endpoint=False)
    return found


FRIENDLY = for_release("v0.15.2", friendly=True)
