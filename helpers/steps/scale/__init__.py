"""07_one_server_many_models: what a pod costs here, many TrainedModels in one server, and where it stops."""
