"""The applications over the library: the command line, settings files and presets, serve, compare, export."""
