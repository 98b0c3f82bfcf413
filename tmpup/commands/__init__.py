"""The commands: plain functions over a `Runtime`, with no typer or rich imports.

Each module has a `run(rt, request)` (or a few named functions) that raises `TmpupError`s and writes
results through `rt.output`; the CLI only parses arguments and renders errors.
"""
