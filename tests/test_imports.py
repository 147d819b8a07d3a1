"""The import rule: the core packages never import the data pipelines, whose entry points
(trainer, demo, cli, bench and the commands) wire the two together."""

import ast
import pathlib

import jax_interact

CORE = ("models", "streams", "inference", "background", "evaluation")


def _imported_modules(path: pathlib.Path) -> list[tuple[int, str]]:
  found = []
  for node in ast.walk(ast.parse(path.read_text(), str(path))):
    if isinstance(node, ast.Import):
      found += [(node.lineno, alias.name) for alias in node.names]
    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
      found.append((node.lineno, node.module))
  return found


def test_core_packages_do_not_import_data_pipelines():
  root = pathlib.Path(jax_interact.__file__).parent
  offenders = [f"{path.relative_to(root.parent)}:{line} imports {module}"
               for package in CORE for path in sorted((root / package).rglob("*.py"))
               for line, module in _imported_modules(path)
               if module.split(".")[0] == "data_pipelines"]
  assert not offenders, "\n".join(offenders)
