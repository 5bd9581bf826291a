"""05_lifecycle and 99_cleanup: reloading, over-memory models, and taking everything down."""
