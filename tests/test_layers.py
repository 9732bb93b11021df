"""Dependencies point one way: production code never imports the fault tooling or the tests'
worlds. (A node sees a clock source and a link plan; chaos is one provider of them.)"""

import ast
import pathlib

import quorapay

ROOT = pathlib.Path(quorapay.__file__).parent
PRODUCTION = ("core", "node", "cluster", "security", "transport", "clock", "api", "logs",
              "config.py", "client.py", "files.py")
FORBIDDEN = ("quorapay.chaos", "quorapay.check", "quorapay.sim", "quorapay.cli")


def imports(path: pathlib.Path) -> list[str]:
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append(node.module)
    return found


def test_production_code_imports_no_fault_tooling() -> None:
    for part in PRODUCTION:
        target = ROOT / part
        for path in [target] if target.is_file() else sorted(target.rglob("*.py")):
            for name in imports(path):
                assert not any(name == f or name.startswith(f + ".") for f in FORBIDDEN), \
                    f"{path.relative_to(ROOT)} imports {name}"
