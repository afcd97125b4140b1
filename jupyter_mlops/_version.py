"""The version, in a module of its own: the CLI reads it without importing the package's __init__."""
__version__ = "0.1.0"
