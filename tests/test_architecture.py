"""The shape of the code: import-linter contracts (pyproject.toml) and the house rules they cannot express.

- Layers point one way (workflow → classifier → similarity → catalogue → common), TensorFlow stays out of
  everything the web process imports, services never import tasks, the ML cores never import Django.
- No function-local import dodges a cycle: the only ones allowed are in AppConfig.ready() and lazy imports of
  TensorFlow-heavy modules in worker-only code, marked with a `# lazy:` comment on the import line.
- Modules stay near 500 lines and functions near 60, or say why (`# long: <reason>` on the def's first line).
- Each shared name is defined once; every setting is declared in config/settings.py and documented.
"""
from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("labelapp", "classifier", "similarity", "config")
MODULE_MAX_LINES = 550
FUNCTION_MAX_LINES = 60


def _production_modules() -> list[Path]:
    return sorted(path for package in PACKAGES for path in (REPO / package).rglob("*.py")
                  if "migrations" not in path.parts)


def test_import_contracts_are_kept():
    lint = Path(sys.executable).with_name("lint-imports")

    result = subprocess.run([str(lint), "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=300)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 kept, 0 broken" in result.stdout


def _function_local_imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text())
    lines = path.read_text().splitlines()
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and any(isinstance(base, ast.Name) and base.id == "AppConfig"
                                                  for base in node.bases):
            # AppConfig.ready() is where Django wants cross-app imports to happen (the registry is loaded).
            node.body = [item for item in node.body if not (isinstance(item, ast.FunctionDef) and item.name == "ready")]
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for inner in ast.walk(node):
                if isinstance(inner, (ast.Import, ast.ImportFrom)) and not _marked_lazy(lines, inner.lineno):
                    found.append((inner.lineno, lines[inner.lineno - 1].strip()))
    return found


def _marked_lazy(lines: list[str], lineno: int) -> bool:
    """Whether the import line, or the comment lines right above it (an import block), say `# lazy:`."""
    index = lineno - 1
    if "# lazy:" in lines[index]:
        return True
    while index > 0 and lines[index - 1].strip().startswith(("#", "from ", "import ")):
        index -= 1
        if "# lazy:" in lines[index]:
            return True
    return False


def test_no_function_local_imports_except_marked_lazy_ones():
    offenders = {str(path.relative_to(REPO)): found for path in _production_modules()
                 if (found := _function_local_imports(path))}

    assert offenders == {}


def test_modules_and_functions_stay_small_or_say_why():
    too_long = []
    for path in _production_modules():
        text = path.read_text()
        lines = text.splitlines()
        if len(lines) > MODULE_MAX_LINES:
            too_long.append(f"{path.relative_to(REPO)}: {len(lines)} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                header = " ".join(lines[node.lineno - 1:node.body[0].lineno])
                if length > FUNCTION_MAX_LINES and "# long:" not in header:
                    too_long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name}: {length} lines")

    assert too_long == []


def test_label_strategies_cover_the_sampling_registry():
    from classifier.core.sampling import STRATEGIES
    from labelapp.catalogue.models import LabelStrategy

    assert set(STRATEGIES) <= set(LabelStrategy.values)


def test_architecture_and_objective_names_match_the_core():
    from classifier.core.architectures import ARCHITECTURES
    from classifier.core.estimator import ProductClassifier
    from classifier.core.names import ARCHITECTURE_NAMES, OBJECTIVES

    assert tuple(ARCHITECTURES) == ARCHITECTURE_NAMES
    with pytest.raises(ValueError, match="objectives"):
        ProductClassifier(config=None, objectives=("exclusive", "vibes")).fit(None, None)
    assert OBJECTIVES == ("exclusive", "rule")


def test_settings_are_declared_once_and_documented():
    from django.conf import settings

    settings_text = (REPO / "config" / "settings.py").read_text()
    read_with_default = [f"{path.relative_to(REPO)}: {match}" for path in _production_modules()
                         for match in re.findall(r"getattr\(settings, \"(\w+)\"", path.read_text())]
    used = {name for path in _production_modules() if path.name != "settings.py"
            for name in re.findall(r"\bsettings\.([A-Z][A-Z0-9_]+)\b", path.read_text())}
    environment = set(re.findall(r"(?:environ\.get|env_bool|env_list|env_required)\(\s*\"([A-Z][A-Z0-9_]+)\"",
                                 settings_text))
    readme = (REPO / "README.md").read_text()

    assert read_with_default == []  # a default belongs in config/settings.py, where the environment can set it
    assert sorted(name for name in used if not hasattr(settings, name)) == []
    assert sorted(name for name in environment if f"`{name}`" not in readme) == []
