"""Wire protocols shared by several providers: tus 1.0.0 resumable uploads (`tus.py` the client and
its requests, `tus_patch_loop.py` the HEAD/PATCH loop that feeds one upload, `tus_transfer.py` that
upload's resume record) and streaming multipart bodies (`multipart.py`). Nothing here knows a
particular provider's API."""
