"""tmpup's benchmark suite (issue 6): a fast loopback sink, a launcher that measures peak RSS, and the
harness `bench/run.py` that times tmpup against curl, tuspy and the Node `@tus/server`. See bench/README.md.
"""
