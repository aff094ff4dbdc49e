"""Files: atomic writes and checked JSON/text reading, used across the lab. Imports nothing of the lab but its error."""

import json
import os
import tempfile
from pathlib import Path

from minilab.errors import LabError


def atomic_write(path: str | Path, write) -> None:
    """Call ``write(file)`` on a temporary file beside ``path``, flush it to disk, then rename it over.

    At every instant ``path`` is either the complete old file or the complete new one. The file
    gets the permissions a plain ``open`` would give it (mkstemp's own are owner-only).
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        if hasattr(os, "fchmod"):  # not on Windows, where mkstemp's mode means nothing anyway
            os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _umask() -> int:
    mask = os.umask(0)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


def _fsync_dir(directory: Path) -> None:
    try:  # make the rename itself durable; not every platform can open a directory
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_json(path: str | Path, obj) -> None:
    """Write ``obj`` as indented UTF-8 JSON, atomically."""
    data = json_bytes(obj)
    atomic_write(path, lambda f: f.write(data))


def json_bytes(obj) -> bytes:
    return (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def read_json(path: str | Path, what: str | None = None) -> dict:
    """The JSON object in ``path``; a missing, unreadable or invalid file is a LabError naming ``what``."""
    what = what or repr(str(path))
    try:
        obj = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise LabError(f"cannot read {what}: {e.strerror or e}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise LabError(f"{what} is not valid JSON ({e})") from None
    if not isinstance(obj, dict):
        raise LabError(f"{what} does not hold a JSON object")
    return obj
