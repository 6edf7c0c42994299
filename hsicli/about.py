"""What hsicli records about itself in the artifacts it writes: its version, and the command of
a run made from Python. A leaf at the bottom of the layers that every layer may import.

Not the package root, whose lazy re-export of the Python API (`hsicli.train`, ...) reaches the
engine: a lower layer importing the root for its version would close an import circle.
"""

__version__ = "0.1.0"

# What the provenance of an artifact made from Python (hsicli.api) records as its command.
API_COMMAND = "python API"
