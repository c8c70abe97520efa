"""learnops_worker."""

__version__ = "0.1.0"
