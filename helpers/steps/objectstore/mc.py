"""The guide's `mc` (MinIO client) steps, and the rclone lines that do the same on the local target.

Explained in 01_minio. `python -m helpers.local env` points rclone's remote `myminio` (the
guide's `mc` alias) at the local S3 server through a config file (mode 0600, RCLONE_CONFIG), so
`rclone tree myminio:triton` runs in a shell after `eval "$(python -m helpers.local env)"`.
"""
from __future__ import annotations

from helpers.clients.target import Target
from helpers.core.i18n import _


def with_rclone(place: Target, mc: str, rclone: str) -> str:
    """The guide's `mc` lines; where the target's shell has rclone set up instead (the local stack),
    the rclone lines that run here after them."""
    if not place.shell_env:
        return mc
    return "\n".join(["# " + _("the guide, with the MinIO client:"), *(f"# {line}" for line in mc.splitlines()),
                      "# " + _("on the local stack, rclone does the same (its remote myminio is the guide's alias):"),
                      place.shell_env, rclone])


def setup_commands(place: Target, address: str) -> tuple[str, str]:
    """The guide's `mc` set-up (`mc config host add`, `mc config host ls`) for MinIO at `address`
    (`minio-service:9000`, as pods of the learner's namespace name it), with the keys from the shell
    variables MINIO_ACCESS_KEY and MINIO_SECRET_KEY; and why it differs from the guide's lines."""
    mc = "\n".join([f"./mc config host add myminio http://{address} $MINIO_ACCESS_KEY $MINIO_SECRET_KEY",
                    "./mc config host ls"])
    why = _("MinIO by the Service name your namespace resolves, not the pod's IP; the keys from shell variables, "
            "never typed")
    if place.shell_env:
        why = _("{why}; on the local stack rclone runs instead of mc").format(why=why)
    return with_rclone(place, mc, "rclone listremotes --long"), why


def bucket_commands(place: Target, bucket: str) -> tuple[str, str]:
    """The guide's `mc mb` and `mc tree` for `bucket` (rclone's lines after them on the local stack), and
    why they differ from the guide's (no reason needed where they are its own)."""
    text = with_rclone(place, f"./mc mb myminio/{bucket}\n./mc tree myminio/",
                       f"rclone mkdir myminio:{bucket}\nrclone tree myminio:")
    if place.shell_env:
        return text, _("on the local stack rclone runs instead of mc")
    return text, _("the bucket (or folder) of your settings")
