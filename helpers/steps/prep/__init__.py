"""00_cluster_prep: what the cluster needs before the walkthrough (preflight checks, Knative's config)."""
