"""CLI commands of the later stages, one module per area, each with `register(app)`."""
