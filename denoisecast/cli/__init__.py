"""The command-line tools installed with the package."""
