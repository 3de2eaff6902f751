"""Every declared runtime dependency earns its place: the code imports it, or it is a tool the
pipeline runs by name. A dependency nobody imports costs every user a download and a build (an
unused ibis-framework pulled in its own Spark and DuckDB extras) and hides which parts matter.
"""

from __future__ import annotations

import ast
import re
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CODE_DIRS = ("pipeline", "features")
# Used without an import statement in our code, each for a stated reason.
NOT_IMPORTED = {
    "dvc": "the CLI that runs dvc.yaml (`make repro`, `dvc repro`)",
    "psycopg": "SQLAlchemy's PostgreSQL driver, loaded from a postgresql+psycopg:// URL",
}


def _name(requirement: str) -> str:
    return re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {_name(r) for r in project["dependencies"]}


def extra(name: str) -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {_name(r) for r in project["optional-dependencies"][name]}


def imported_modules() -> set[str]:
    found: set[str] = set()
    for folder in CODE_DIRS:
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if isinstance(node, ast.Import):
                    found |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    found.add(node.module.split(".")[0])
    return found


def imported_distributions() -> set[str]:
    owners = packages_distributions()
    return {
        dist.lower().replace("_", "-")
        for module in imported_modules()
        for dist in owners.get(module, [])
    }


def test_every_declared_dependency_is_imported_or_a_named_tool():
    unused = declared() - imported_distributions() - set(NOT_IMPORTED)
    assert not unused, f"declared in pyproject.toml but never imported: {sorted(unused)}"


def test_the_exceptions_are_still_declared():
    """An exception for a dependency that is gone is stale; drop it with the dependency."""
    assert set(NOT_IMPORTED) <= declared()


def test_the_check_sees_a_dependency_nobody_imports():
    """The check can fail: a name no module imports is reported as unused."""
    assert "ibis-framework" not in imported_distributions()
    assert "sqlglot" in imported_distributions() and "lightgbm" in imported_distributions()


def test_every_imported_distribution_is_declared_in_the_core_or_the_spark_extra():
    """A third-party import that is declared nowhere works only where something else pulled
    it in; the core install (`pip install churn-pipeline`) would then fail on it."""
    allowed = declared() | extra("spark") | {"churn-pipeline"}
    owners = packages_distributions()
    undeclared = {
        module: sorted(dists)
        for module in imported_modules()
        if (dists := {d.lower().replace("_", "-") for d in owners.get(module, [])})
        and not dists & allowed
    }
    assert not undeclared, f"imported but not declared (module: distributions): {undeclared}"


def test_spark_is_an_extra_not_part_of_the_core():
    """The DuckDB path needs no Spark: pyspark (a 430 MB source build) is the [spark] extra,
    and the dev install, which runs the parity tests, takes that extra."""
    assert "pyspark" not in declared()
    assert "pyspark" in extra("spark")
    assert any(r.startswith("churn-pipeline[spark]") for r in _raw_extra("dev"))


def _raw_extra(name: str) -> list[str]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"][
        name
    ]
