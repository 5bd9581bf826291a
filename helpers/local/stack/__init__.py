"""The local stack's own processes.

The control plane, the S3 server, Triton, the supervisor that keeps them running, and the release
each stack imitates (`releases`).
"""
