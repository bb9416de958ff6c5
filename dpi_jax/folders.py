"""The rules of the folders a run reads and writes, so that nothing is silently lost:

- one run at a time writes into a folder (:func:`locked`: an advisory ``flock`` on the folder that the OS releases
  when the process ends, however it ends, so a killed run leaves no stale lock);
- every input gets its own output name (:func:`unique_names`: ``a.png`` and ``a.jpg`` become ``a_png`` and
  ``a_jpg``), and names that would collide with another input's outputs are refused with both files named;
- an input file is never written over (:func:`check_not_inputs`), whatever ``overwrite`` says.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import logging
import os
import re
from pathlib import Path
from typing import Iterator, Sequence

from dpi_jax.errors import FolderError

log = logging.getLogger(__name__)


@contextlib.contextmanager
def locked(folder: str | os.PathLike, what: str = "run") -> Iterator[Path]:
    """Hold ``folder``'s lock (an exclusive ``flock`` on the folder itself, created if needed: no file is left in it)
    while the block runs; raises :class:`FolderError` at once when another process holds it. ``what`` names the
    kind of run in that message ("training", "sampling run")."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FolderError(f"{folder}: another {what} is writing there (it holds the folder's lock); wait for it "
                              f"to end, stop it, or choose another folder") from None
        yield folder
    finally:
        os.close(fd)  # releases the lock


def unique_names(paths: Sequence[Path], derived: str | None = None) -> list[str]:
    """One output name per input path: the stem, or ``<stem>_<suffix>`` for stems that several inputs share (e.g.
    ``a.png`` and ``a.jpg``; said in the log). ``derived``: a regular expression of the suffixes that an input's own
    outputs add to its name (photo mode: ``_compare``, ``_face0``, ...); an input whose name is another's name plus
    such a suffix is refused with both files named. Raises :class:`FolderError` when names still collide."""
    stems = collections.Counter(p.stem for p in paths)
    names = [f"{p.stem}_{p.suffix.lstrip('.').lower()}" if stems[p.stem] > 1 else p.stem for p in paths]
    for path, name in zip(paths, names, strict=True):
        if name != path.stem:
            log.warning("%s: named %s in the outputs (another input has the stem %r)", path, name, path.stem)
    owners = collections.defaultdict(list)
    for path, name in zip(paths, names, strict=True):
        owners[name].append(path)
    clashes = [f"{' and '.join(map(str, owned))} -> {name}" for name, owned in owners.items() if len(owned) > 1]
    if derived:
        by_name = dict(zip(names, paths, strict=True))
        pattern = re.compile(rf"(.+)(?:{derived})$")
        for name, path in by_name.items():
            match = pattern.fullmatch(name)
            if match and match.group(1) in by_name:
                clashes.append(f"{path} and {by_name[match.group(1)]}: {name} is also an output name of "
                               f"{by_name[match.group(1)].name}")
    if clashes:
        raise FolderError("output names collide: " + "; ".join(clashes) + " (rename one of each)")
    return names


def check_not_inputs(input_dir: str | os.PathLike, output_dir: str | os.PathLike) -> None:
    """Refuse an output folder that is the input folder: results would replace inputs of the same name (or be read
    as inputs by the next run), whatever ``overwrite`` says."""
    if Path(input_dir).resolve() == Path(output_dir).resolve():
        raise FolderError(f"output_dir {output_dir} is the input folder {input_dir}: results would replace or mix "
                          f"with the inputs; choose another output_dir")
