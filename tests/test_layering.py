"""The package's one-way flow: a module may import only its own layer and the layers before it."""

from __future__ import annotations

import ast
from pathlib import Path

import audiossl

LAYERS = ["config", "progress", "metrics", "audio", "data", "models", "objectives", "training", "features", "asr",
          "downstream", "bench", "reports", "cli"]
PACKAGE = Path(audiossl.__file__).parent


def _layer_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "audiossl" or len(parts) < 2:
        return None
    return parts[1] if parts[1] in LAYERS else None


def _imported_modules(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "audiossl" and node.level == 0:
            names.extend(f"audiossl.{alias.name}" for alias in node.names)  # from audiossl import metrics
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
        elif isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
    return names


def test_no_module_imports_a_later_layer() -> None:
    violations = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        own = relative.parts[0].removesuffix(".py") if relative.parts else ""
        if own not in LAYERS:
            continue
        for module in _imported_modules(path):
            target = _layer_of(module)
            if target is not None and LAYERS.index(target) > LAYERS.index(own):
                violations.append(f"{relative}: imports {module} ({own} -> {target})")
    assert not violations, "layering violated:\n" + "\n".join(violations)


def test_the_check_sees_imports() -> None:
    """Guard against a vacuous pass: the objectives really do import models, and models never objectives."""
    imports = _imported_modules(PACKAGE / "objectives" / "wav2vec2.py")
    assert any(_layer_of(m) == "models" for m in imports)


def test_readme_architecture_matches_the_tree_in_layer_order() -> None:
    """A newcomer finds the room for a change from the README alone, so its map must be the real one."""
    readme = (PACKAGE.parent / "README.md").read_text()
    block = readme.split("## Architecture", 1)[1].split("```", 2)[1]
    listed = [line.split()[0].rstrip("/").removesuffix(".py") for line in block.splitlines()
              if line.startswith("  ") and not line.startswith("   ")]
    packages = {path.name for path in PACKAGE.iterdir() if (path / "__init__.py").is_file()}
    modules = {path.stem for path in PACKAGE.glob("*.py") if path.stem != "__init__"}
    tree = packages | modules
    assert set(listed) == tree
    assert [name for name in listed if name in LAYERS] == LAYERS
