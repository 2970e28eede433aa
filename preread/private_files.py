"""Files only their owner may read: secrets PreRead generates (keys, a private Orthanc's
password).

Each file is created with mode 0600 from the start (never written first and restricted after),
in a folder created 0700 when it is missing.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

__all__ = ["write_private_file"]


def write_private_file(path: Path, data: bytes, *, exclusive: bool = False) -> Path:
    """Write ``data`` to ``path`` with mode 0600 and return ``path``.

    With ``exclusive`` an existing file is never replaced (FileExistsError), e.g. a key that
    other files were signed with. Otherwise the file is replaced atomically (a temporary file
    in the same folder, renamed over it), so a reader never sees half a secret and an
    existing file's wider mode, or a symbolic link planted at ``path``, is not kept.

    Raises:
        OSError: the folder or the file cannot be written.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if exclusive:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as sink:
            sink.write(data)
            sink.flush()
            os.fsync(sink.fileno())
        return path
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mode 0600
    try:
        with os.fdopen(fd, "wb") as sink:
            sink.write(data)
            sink.flush()
            os.fsync(sink.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    return path
