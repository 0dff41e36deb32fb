"""Files and folders written so that a kill at any instant leaves the old or the new version, and
folders deleted or replaced only when they are `rag` artifacts of the expected kind.

An artifact folder says what it is in a header file (`manifest.json` of an index, `checkpoint.json`
of a training checkpoint ...) whose JSON names its format, e.g. "rag-index v1". A scratch folder
(`X.partial`, where an artifact is assembled before it replaces `X`) carries a `.rag-scratch`
marker from the moment it is made. Nothing else is ever deleted.
"""
from __future__ import annotations

import contextlib
import ctypes
import fnmatch
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from rag.types import RagError

SCRATCH_MARKER = ".rag-scratch"


@dataclass(frozen=True)
class ArtifactKind:
    """What a folder must hold to be an artifact of this kind: a header file naming `format`."""

    name: str  # for messages: "an index folder"
    header: str  # file in the folder, e.g. "manifest.json"
    format: str  # its "format" value, e.g. "rag-index v1" (the version is not compared)
    owned: tuple[str, ...] = ()  # fnmatch patterns of the entries rag writes in such a folder; () = not enumerated

    def matches(self, folder: Path) -> bool:
        found = header_format(folder / self.header)
        return found is not None and found.split(" v")[0] == self.format.split(" v")[0]

    def foreign(self, folder: Path) -> list[str]:
        """Entries of `folder` that rag never writes in an artifact of this kind (a user's notes, runs ...)."""
        if not self.owned or not folder.is_dir():
            return []
        patterns = self.owned + (self.header, SCRATCH_MARKER, "*.tmp")
        return sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir() if not any(fnmatch.fnmatchcase(p.name, pat) for pat in patterns))


# --- single files ----------------------------------------------------------------------------


def write_atomic(path: Path, data: bytes) -> None:
    """Write by rename, synced: after a crash the file holds the old bytes or the new, never a mix."""
    write_with(path, lambda tmp: Path(tmp).write_bytes(data))


def write_json_atomic(path: Path, data: dict) -> None:
    write_atomic(path, (json.dumps(data, indent=2) + "\n").encode())


def save_npy_atomic(path: Path, array) -> None:
    import numpy as np

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:  # a file object: np.save would add ".npy" to a bare name
            np.save(f, array)

    write_with(path, write)


def write_with(path: Path, write) -> None:
    """`write(tmp_path)` fills a temporary file, which is synced and renamed to `path`: the one
    atomic write for files other libraries produce (FAISS indexes, numpy arrays)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    write(str(tmp))
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform can open a directory
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def read_json(path: Path) -> dict | None:
    """A JSON object, or None when the file is missing or not valid JSON."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def read_versioned_json(path: Path, expected_format: str) -> dict:
    """A JSON file that names its format version, checked against the one this code reads."""
    try:
        data = json.loads(Path(path).read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RagError(f"{path}: invalid JSON ({e})") from e
    except OSError as e:
        raise RagError(f"{path}: cannot read ({e.strerror})") from e
    if not isinstance(data, dict) or data.get("format") != expected_format:
        found = data.get("format") if isinstance(data, dict) else None
        raise RagError(f"{path}: format {found!r}, this version of rag reads {expected_format!r}")
    return data


def header_format(path: Path) -> str | None:
    """The "format" a header file names; found even in a damaged file, so it can still be repaired."""
    data = read_json(path)
    if data is not None:
        return data.get("format") if isinstance(data.get("format"), str) else None
    try:
        found = re.search(r'"format"\s*:\s*"([^"]+)"', Path(path).read_text(errors="replace"))
    except OSError:
        return None
    return found.group(1) if found else None


# --- folders ---------------------------------------------------------------------------------


def describe(folder: Path, limit: int = 4) -> str:
    """'a.txt, notes/ and 3 more': what a folder holds, for a refusal message."""
    try:
        names = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir())
    except OSError:
        return "a file" if folder.exists() else "nothing"
    if not names:
        return "nothing"
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def check_replaceable(folder: Path, kind: ArtifactKind, hint: str = "") -> None:
    """Refuse (RagError, nothing changed) unless `folder` is absent, empty or an artifact of `kind`."""
    folder = Path(folder)
    if not folder.exists() and not folder.is_symlink():
        return
    if folder.is_dir() and not folder.is_symlink() and (not any(folder.iterdir()) or kind.matches(folder)):
        _refuse_foreign(folder, kind, hint)
        return
    if folder.is_symlink():  # replacing the link would leave its target behind; following it would replace someone else's folder
        raise RagError(f"{folder} is a symbolic link (to {os.readlink(folder)}): rag never replaces a folder through a link, so it is left as it is "
                       f"and nothing was written. Pass the real path instead. {hint}".rstrip())
    raise RagError(f"{folder} is not {kind.name} (it holds {describe(folder)}): it is left as it is and nothing was written. {hint}".rstrip())


def _refuse_foreign(folder: Path, kind: ArtifactKind, hint: str = "") -> None:
    foreign = kind.foreign(folder)
    if foreign:
        shown = ", ".join(foreign[:8]) + (f" and {len(foreign) - 8} more" if len(foreign) > 8 else "")
        raise RagError(f"{folder} holds files rag did not write there ({shown}): replacing it would delete them, so it is left as it is and "
                       f"nothing was written. Move them out of the folder and rerun. {hint}".rstrip())


def check_not_inside(path: str | Path, folder: Path, what: str) -> None:
    """Refuse to replace a folder that holds an input of the same run (e.g. the corpus being read)."""
    path, folder = Path(path).resolve(), Path(folder).resolve()
    if path == folder or folder in path.parents:
        raise RagError(f"{what} {path} is inside {folder}, which this command would replace: choose another output folder")


def make_scratch(folder: Path) -> Path:
    """An empty scratch folder, marked as ours so that a later run may delete it."""
    folder.mkdir(parents=True, exist_ok=False)
    (folder / SCRATCH_MARKER).write_text("made by rag; safe to delete\n")
    return folder


def fresh_scratch(folder: Path, kind: ArtifactKind | None = None) -> Path:
    """`folder` emptied (when it is a scratch folder of ours, else refused) and marked as scratch."""
    remove_scratch(folder, kind)
    return make_scratch(folder)


def is_scratch(folder: Path, kind: ArtifactKind | None = None) -> bool:
    return folder.is_dir() and ((folder / SCRATCH_MARKER).exists() or (kind is not None and kind.matches(folder)))


def remove_scratch(folder: Path, kind: ArtifactKind | None = None) -> None:
    """Delete a scratch folder of ours (marked, or an artifact of `kind`); refuse anything else.

    The marker and header go last: a kill midway leaves a folder that is still recognized as ours.
    """
    folder = Path(folder)
    if not folder.exists():
        return
    if not is_scratch(folder, kind):
        raise RagError(f"{folder} is in the way (it holds {describe(folder)}) and is not a scratch folder of rag: move it away and rerun")
    if kind is not None:
        _refuse_foreign(folder, kind)
    keep = {SCRATCH_MARKER, kind.header if kind else SCRATCH_MARKER}
    for entry in folder.iterdir():
        if entry.name not in keep:
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
    for name in keep:
        (folder / name).unlink(missing_ok=True)
    folder.rmdir()


def publish_folder(new: Path, target: Path, kind: ArtifactKind | None = None) -> None:
    """Put the finished folder `new` at `target`; an existing `target` is replaced and deleted.

    The replacement is one atomic exchange of the two paths (Linux renameat2), so a reader of
    `target` finds the old or the new version at every instant. Where the exchange is not
    available, two renames go through `target.old`, which `recover_folder` puts back after a kill.
    """
    new, target = Path(new), Path(target)
    if kind is not None:
        check_replaceable(target, kind)
    (new / SCRATCH_MARKER).unlink(missing_ok=True)
    if not target.exists():
        os.rename(new, target)
        fsync_dir(target.parent)
        return
    if _exchange(new, target):
        fsync_dir(target.parent)
        (new / SCRATCH_MARKER).write_text("the replaced version; safe to delete\n")
        remove_scratch(new, kind)
        return
    old = target.with_name(target.name + ".old")
    remove_scratch(old, kind)
    (target / SCRATCH_MARKER).write_text("the version being replaced; safe to delete\n")
    os.rename(target, old)
    os.rename(new, target)
    fsync_dir(target.parent)
    remove_scratch(old, kind)


def recover_folder(target: Path, kind: ArtifactKind | None = None) -> None:
    """After a kill between the two renames of a fallback swap: the old version back in place."""
    old = target.with_name(target.name + ".old")
    if not target.exists() and old.is_dir() and (kind is None or kind.matches(old)):
        os.rename(old, target)


_RENAME_EXCHANGE, _AT_FDCWD = 2, -100


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths; False where the platform or file system cannot."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    errno = ctypes.get_errno()
    if errno in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: not supported here
        return False
    raise OSError(errno, os.strerror(errno), str(b))


@contextlib.contextmanager
def folder_lock(folder: Path, what: str):
    """Hold an exclusive lock on `folder` while changing it; a second writer is refused at once."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; writers are not serialized there
        yield
        return
    path = Path(folder) / ".lock"
    with open(path, "a+") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            raise RagError(f"{folder} is being changed by {holder}: wait for it to finish, then run {what} again") from None
        f.seek(0)
        f.truncate()
        f.write(f"rag process {os.getpid()}")
        f.flush()
        try:
            yield
        finally:
            f.truncate(0)
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
