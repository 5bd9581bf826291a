"""The guide's `mc` (MinIO client) steps, and the rclone lines that do the same on the local target.

Explained in 01_minio. `python -m helpers.local env` points rclone's remote `myminio` (the
guide's `mc` alias) at the local S3 server through a config file (mode 0600, RCLONE_CONFIG), so
`rclone tree myminio:triton` runs in a shell after `eval "$(python -m helpers.local env)"`.
"""
from __future__ import annotations

from helpers.clients.target import Target


def with_rclone(place: Target, mc: str, rclone: str) -> str:
    """The guide's `mc` lines; where the target's shell has rclone set up instead (the local stack),
    the rclone lines that run here after them."""
    if not place.shell_env:
        return mc
    return "\n".join(["# the guide, with the MinIO client:", *(f"# {line}" for line in mc.splitlines()),
                      "# on the local place, rclone does the same (its remote myminio is the guide's alias):",
                      place.shell_env, rclone])
