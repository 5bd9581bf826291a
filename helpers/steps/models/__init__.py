"""03_cifar10 and 04_inception: model files (fetched, cached or stand-ins), images, predictions and the agent's log."""
