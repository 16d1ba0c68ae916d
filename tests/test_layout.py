"""The layout of the house: drivers at the root, the library in `pidoc/`, and imports one way only."""
import ast

from conftest import PROJECT_ROOT

DRIVERS = {"piDOC_predictions", "piDOC_observation", "make_mock_clusters", "train_piDOC", "calibrate_piDOC", "evaluate_piDOC"}
ROOT_MODULES = DRIVERS | {"functions"}


def imported_modules(path):
    """Every module name a file imports (absolute imports, at any depth of the file)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            # `from pidoc import io` imports the module pidoc.io.
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_the_root_holds_the_drivers_and_functions_only():
    assert {path.stem for path in PROJECT_ROOT.glob("*.py")} == ROOT_MODULES


def test_the_package_imports_no_root_script():
    package_files = sorted((PROJECT_ROOT / "pidoc").rglob("*.py"))
    assert len(package_files) >= 10
    for path in package_files:
        top_level = {name.split(".")[0] for name in imported_modules(path)}
        assert not top_level & ROOT_MODULES, f"{path.relative_to(PROJECT_ROOT)} imports {sorted(top_level & ROOT_MODULES)}"


def test_no_driver_imports_another_driver():
    for driver in sorted(DRIVERS):
        top_level = {name.split(".")[0] for name in imported_modules(PROJECT_ROOT / f"{driver}.py")}
        others = top_level & (DRIVERS - {driver})
        assert not others, f"{driver}.py imports {sorted(others)}"
