"""The core is sans-IO: it may import only pure stdlib modules, msgspec and itself."""

import ast
import pathlib

import quorapay.core

CORE = pathlib.Path(quorapay.core.__file__).parent
ALLOWED_ROOTS = {
    "__future__", "dataclasses", "enum", "typing", "collections", "itertools", "functools",
    "hashlib", "heapq", "bisect", "re", "msgspec", "quorapay",
}  # msgspec: typed data only (no I/O); it defines the wire and disk schemas


def imported_roots(path: pathlib.Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.append(node.module or "")
    return names


def test_core_imports_nothing_with_io() -> None:
    files = sorted(CORE.rglob("*.py"))
    assert len(files) > 5
    for path in files:
        for name in imported_roots(path):
            assert name.split(".")[0] in ALLOWED_ROOTS, f"{path.name} imports {name}"
            assert name.split(".")[0] != "quorapay" or name.startswith("quorapay.core"), (
                f"{path.name} imports {name} from outside the core")
