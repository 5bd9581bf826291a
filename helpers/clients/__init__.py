"""Clients of the things a notebook talks to: Kubernetes (and the KServe objects in it), S3, Triton, and where the notebook runs.

May import `helpers.core` only."""
