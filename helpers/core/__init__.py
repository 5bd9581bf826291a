"""The bottom layer: settings, names, errors, waits and how values are shown. Imports nothing else of `helpers`."""
