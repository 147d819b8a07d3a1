"""Output files and folders that appear whole or not at all."""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import shutil
import tempfile
from typing import Iterator


@contextlib.contextmanager
def directory(out: str | os.PathLike) -> Iterator[pathlib.Path]:
  """Yields a fresh folder beside `out` to write into; it becomes `out` when the block ends.

  An existing `out` is replaced only then (moved aside, then removed); if the block raises, the
  temporary folder is removed and `out` is left as it was.
  """
  out = pathlib.Path(out)
  out.parent.mkdir(parents=True, exist_ok=True)
  tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
  try:
    yield tmp
    os.chmod(tmp, 0o755)  # mkdtemp makes it private
    if out.exists():
      old = pathlib.Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
      os.rename(out, old / out.name)
      os.rename(tmp, out)
      shutil.rmtree(old, ignore_errors=True)
    else:
      os.rename(tmp, out)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise


@contextlib.contextmanager
def file(path: str | os.PathLike) -> Iterator[pathlib.Path]:
  """Yields a temporary path beside `path` (with its suffix, so writers that go by the suffix
  pick the same format) to write into; it replaces `path` when the block ends, so a reader sees
  the old file or the new one, never half of one. If the block raises, it is removed."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
  os.close(fd)
  try:
    yield pathlib.Path(tmp)
    os.chmod(tmp, 0o644)  # mkstemp makes it private
    os.replace(tmp, path)
  except BaseException:
    pathlib.Path(tmp).unlink(missing_ok=True)
    raise


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
  with file(path) as tmp:
    tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
  with file(path) as tmp:
    tmp.write_text(text)


def write_json(path: str | os.PathLike, value) -> None:
  """Writes `value` as indented JSON to `path`."""
  write_text(path, json.dumps(value, indent=2) + "\n")
