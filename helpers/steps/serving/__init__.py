"""02_server: how a notebook reaches the multi-model server."""
