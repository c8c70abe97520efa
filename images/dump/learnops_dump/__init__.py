"""learnops_dump."""

__version__ = "0.1.0"
