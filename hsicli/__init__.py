"""hsicli: composable command-line tools for hyperspectral image classification."""

__version__ = "0.1.0"
