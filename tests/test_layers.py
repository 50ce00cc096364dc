"""The layers import downwards only: `aro.core` under everything, the builders and the scoring library side by side
above it, NegCLIP above the scoring library, the `aro` command on top. The metric's Space folder may import the
library (it scores models through it); nothing imports the Space folder."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("core", "cards", "builders", "metrics", "models", "cli")
# What each top-level folder may import of aro, besides itself.
ALLOWED = {
    "core": set(),
    "cards": {"core"},
    "builders": {"core", "cards"},
    "metrics": {"core", "cards"},
    "models": {"core", "cards", "builders", "metrics"},
    "cli": {"core", "cards", "builders", "metrics", "models"},
}
SPACE = ROOT / "metrics" / "aro_accuracy"


def aro_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every absolute import of an `aro.` module in `path`, at any depth of the code."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
    return [(line, module) for line, module in found if module == "aro" or module.startswith("aro.")]


def test_layers_import_downwards_only():
    wrong = []
    for folder in FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            for line, module in aro_imports(path):
                target = module.split(".")[1] if module.count(".") else ""
                if path.is_relative_to(SPACE) and module.startswith("aro.metrics.scoring"):
                    continue  # the Space scores models through the library
                if module.startswith("aro.metrics.aro_accuracy"):
                    wrong.append(f"{path.relative_to(ROOT)}:{line} imports the Space folder ({module})")
                elif target != folder and target not in ALLOWED[folder]:
                    allowed = sorted(ALLOWED[folder])
                    wrong.append(
                        f"{path.relative_to(ROOT)}:{line} imports {module}: {folder} may import only {allowed}"
                    )
    assert not wrong, "\n".join(wrong)


def test_the_space_carries_the_contract_and_protocol_as_they_are():
    for name in ("contract.py", "protocol.py"):
        assert (SPACE / name).read_bytes() == (ROOT / "core" / name).read_bytes()
