"""The commands: plain functions over a `Runtime`, with no typer or rich imports.

Each command's module (`upload`, `download`, `info`, `delete`, `resume`, `profiles`) has a `run(rt,
request)` or `run(rt, id)` (`resume` and `profiles`: a few named functions) that raises `TmpupError`s
and writes results through `rt.output`; the CLI only parses arguments and renders errors. The other
modules are their helpers: `names.py` and `ids.py` check upload names and ids, `part_file.py` is a
download's `.part`, `upload_record.py` what an upload does with a file's resume record.
"""
