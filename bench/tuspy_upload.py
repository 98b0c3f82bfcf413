"""The tuspy yardstick: upload one file with the official Python tus client, as its README shows.

python bench/tuspy_upload.py CREATE_URL FILE CHUNK_SIZE      # prints the upload URL
"""

from __future__ import annotations

import os
import sys

from tusclient import client


def main() -> None:
    create_url, path, chunk = sys.argv[1], sys.argv[2], int(sys.argv[3])
    uploader = client.TusClient(create_url).uploader(
        path, chunk_size=chunk, metadata={"filename": os.path.basename(path)}
    )
    uploader.upload()
    print(uploader.url)


if __name__ == "__main__":
    main()
