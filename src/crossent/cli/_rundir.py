"""A run directory written as a whole: a new run never leaves a mixture of two runs.

``crossent train --out runs/latest`` works in the sibling ``runs/.latest.partial/`` (its
per-epoch checkpoint lives there, so Ctrl-C or ``kill -9`` can be resumed) and, only once the run
is complete, renames it into place; the old ``runs/latest`` is kept until then and survives any
failure, interruption or divergence. A lock on ``runs/.latest.lock`` keeps a second writer out.

A run directory holds a marker, ``.crossent-run``, that only crossent writes: a directory is
replaced only if it has the marker, is empty, or (a run made before the marker) holds the whole
set of files crossent writes and nothing else. A user's own ``metrics.json`` is never taken
for a run.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO

from crossent._files import atomic_write, read_regular
from crossent.cli._shared import CLIError

# the marker of a run directory, and what it holds
MARKER = ".crossent-run"
_MARK = {"format": "crossent.run", "version": 1}
# the files `crossent train` writes; a directory holding anything else is not replaced
RUN_FILES = frozenset(
    {
        MARKER,
        "model.npz",
        "checkpoint.npz",
        "metrics.json",
        "curves.png",
        "confusion_matrix.png",
        "weights.png",
    }
)
# what every run holds (with --no-plots too): how a run made before the marker is recognised
_ALWAYS = frozenset({"model.npz", "checkpoint.npz", "metrics.json"})


def is_run(directory: Path) -> bool:
    """Whether ``directory`` is a run crossent wrote: nothing but a run's files, and its
    marker or (a run made before the marker) every file a run always holds."""
    names = {p.name for p in directory.iterdir()}
    if not names <= RUN_FILES:
        return False
    try:
        return json.loads(read_regular(directory / MARKER, max_bytes=1024)) == _MARK
    except (OSError, ValueError):
        return names >= _ALWAYS


def partial_dir(out: Path) -> Path:
    """Where a run into ``out`` is written until it is complete."""
    return out.parent / f".{out.name}.partial"


def check_out(out: Path) -> None:
    """Refuse an ``--out`` that cannot become a run directory, before anything is written."""
    if out.name in ("", ".", ".."):
        raise CLIError(f"--out: expected a directory name, got {str(out)!r}")
    if out.exists() and not out.is_dir():
        raise CLIError(f"--out: expected a run directory, got the file {out}")
    if out.is_dir() and any(out.iterdir()) and not is_run(out):
        names = sorted(p.name for p in out.iterdir() if p.name not in RUN_FILES)
        foreign = sorted(names, key=lambda n: n.startswith("."))  # visible names first
        if foreign:
            raise CLIError(
                f"--out: {out} holds files that are not a crossent run ({foreign[0]!r}"
                f"{', ...' if len(foreign) > 1 else ''}); a run replaces its whole "
                "directory, so pass a new or run directory"
            )
        held = sorted(p.name for p in out.iterdir())
        raise CLIError(
            f"--out: {out} holds {', '.join(map(repr, held[:3]))}{', ...' if len(held) > 3 else ''}"
            f" but is not a crossent run (no {MARKER} marker, and not the files a run "
            "holds); a run replaces its whole directory, so pass a new or run directory"
        )
    parent = out.parent
    while not parent.exists():  # the nearest existing ancestor must let us create the rest
        parent = parent.parent
    if not parent.is_dir():
        raise CLIError(f"--out: expected a directory path, but {parent} is a file")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise CLIError(f"--out: cannot write in {parent} (permission denied)")


class RunWriter:
    """``with RunWriter(out, resume) as w:`` take the lock and a fresh (or, resuming, the
    interrupted) ``w.work`` directory; ``w.commit()`` renames it to ``out``. Leaving the block
    without a commit removes ``w.work`` unless ``keep_partial`` was set (Ctrl-C)."""

    def __init__(self, out: Path, *, resume: bool) -> None:
        self.out, self.resume = out, resume
        self.work = partial_dir(out)
        self.keep_partial = resume  # an interrupted run's checkpoint is never thrown away
        self._lock: IO[str] | None = None

    def __enter__(self) -> RunWriter:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self._lock = _take_lock(self.out.parent / f".{self.out.name}.lock", self.out)
        if not self.resume and self.work.exists():
            shutil.rmtree(self.work)
        self.work.mkdir(exist_ok=True)
        return self

    def checkpoint_source(self, name: str) -> Path:
        """The checkpoint to resume from: the interrupted run's, else the finished run's."""
        partial = self.work / name
        return partial if partial.is_file() else self.out / name

    def commit(self) -> None:
        atomic_write(self.work / MARKER, json.dumps(_MARK).encode())
        backup = None
        if self.out.exists():
            backup = Path(tempfile.mkdtemp(dir=self.out.parent, prefix=f".{self.out.name}.old-"))
            os.replace(self.out, backup / "run")
        try:
            os.replace(self.work, self.out)
        except OSError:
            if backup is not None:
                os.replace(backup / "run", self.out)
            raise
        finally:
            if backup is not None:
                shutil.rmtree(backup, ignore_errors=True)

    def __exit__(self, *_: object) -> None:
        try:
            if self.work.exists() and not (self.keep_partial and any(self.work.iterdir())):
                shutil.rmtree(self.work, ignore_errors=True)
        finally:
            if self._lock is not None:
                self._lock.close()  # releases the lock


def _take_lock(path: Path, out: Path) -> IO[str]:
    if path.exists() and not path.is_file():  # a FIFO here would block the read below
        raise CLIError(f"--out: expected {path} to be crossent's lock file, got no regular file")
    fh = open(path, "a+")  # noqa: SIM115  (held until the run ends)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no lock
        return fh
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.seek(0)
        holder = fh.read().strip() or "?"
        fh.close()
        raise CLIError(
            f"--out: another crossent train (process {holder}) is writing {out}; "
            "wait for it to finish or pass another --out"
        ) from None
    fh.seek(0)
    fh.truncate()
    fh.write(str(os.getpid()))
    fh.flush()
    return fh
