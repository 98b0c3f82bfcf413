"""tmpup: upload files to temporary-file APIs from the command line.

Importing this package must stay cheap: `tmpup --version` and `--help` load nothing heavy.
"""

__version__ = "0.1.0"
