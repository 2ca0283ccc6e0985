"""Writing the files vplan produces (plans, scripts, cluster profiles): atomically, never half-written."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from vplan.planner.errors import UsageError, VplanError

DEFAULT_MODE = 0o644  # before the umask, like any file a shell redirect writes


def write_atomic(text: str, path: str | Path, *, force: bool, mode: int = DEFAULT_MODE) -> Path:
    """Temp file + rename in the target folder; refuses to replace an existing file unless ``force``.

    The file gets ``mode`` masked by the process umask (mkstemp's 0600 would hide plans from a group)."""
    p = Path(path)

    def cannot(e: Exception) -> UsageError:  # OSError, or ValueError for a NUL byte in the path
        return UsageError(f"cannot write {p} ({getattr(e, 'strerror', None) or e}); choose a folder you can write to")

    try:
        if p.is_dir():
            raise UsageError(f"{p} is a directory; give a file name")
        if p.exists() and not force:
            raise UsageError(f"{p} exists; pass --force to overwrite it")
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    except (OSError, ValueError) as e:
        raise cannot(e) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, mode & ~umask)
        os.replace(tmp, p)  # the rename can fail too: a read-only target, a folder in its place
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise cannot(e) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p


def read_user_file(path: str | Path, what: str, error: type[VplanError], create_hint: str) -> str:
    """The text of a file the user named; each way it can be missing or unreadable is one ``error`` line."""
    p = Path(path)
    try:
        return p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{what} {str(p)!r} does not exist; {create_hint}") from None
    except IsADirectoryError:
        raise error(f"{what} {str(p)!r} is a folder; give the file itself") from None
    except (OSError, UnicodeDecodeError, ValueError) as e:  # ValueError: a NUL byte in the path
        raise error(f"{what} {str(p)!r} cannot be read ({e}); check the path and its permissions") from None
