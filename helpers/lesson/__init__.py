"""What every notebook's frame uses: `notebook.start` and its `Context`, the settings widgets, plots and diagrams.

The top of the learner-facing layers: may import core, clients and steps."""
