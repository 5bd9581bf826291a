"""What the notebooks do, one folder per step of the guide:

- `prep`: 00_cluster_prep (preflight checks, Knative's config)
- `objectstore`: 01_minio (MinIO or SeaweedFS keys, `mc`)
- `serving`: 02_server (how a notebook reaches the server)
- `models`: 03_cifar10 and 04_inception (model files, stand-ins, images, predictions, the agent's log)
- `operations`: 05_lifecycle and 99_cleanup
- `troubleshoot`: 06_troubleshooting (the doctor and the pitfalls)
- `scale`: 07_one_server_many_models (what a pod costs, many TrainedModels in one server, its limits, one
  InferenceService for a whole model repository)

May import `helpers.core`, `helpers.clients` and each other (no circles)."""
