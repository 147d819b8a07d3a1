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


def write_json(path: str | os.PathLike, value) -> None:
  """Writes `value` as indented JSON to `path` through a temporary file beside it, so a reader
  sees the old file or the new one, never half of one."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(f".{path.name}.tmp")
  tmp.write_text(json.dumps(value, indent=2) + "\n")
  os.replace(tmp, path)
