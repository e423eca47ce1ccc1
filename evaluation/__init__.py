"""pass@k evaluation: the unbiased estimator and the `rltf eval` command."""
