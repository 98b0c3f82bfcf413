"""Wire protocols shared by several providers: tus 1.0.0 resumable uploads (`tus.py`) and streaming
multipart bodies (`multipart.py`). Nothing here knows a particular provider's API."""
