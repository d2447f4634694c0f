"""The shape of the code base a newcomer inherits: modules that do not import each other in a
circle, functions short enough to read, method references that lead somewhere, and a config file
whose comments name every choice there is."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "walign"
MAX_FUNCTION_LINES = 60


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imports(name: str, path: Path, known: dict) -> set[str]:
    """The walign modules ``name`` imports anywhere in its file (inside functions too): ``from . import
    x`` counts as importing the submodule x, not the package."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            targets = [f"{module}.{a.name}" if f"{module}.{a.name}" in known else module for a in node.names]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import circles: strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_module_of_walign_takes_part_in_an_import_circle():
    known = modules()
    graph = {name: imports(name, path, known) for name, path in known.items()}
    assert cycles(graph) == []


def test_the_circle_finder_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_function_in_walign_is_longer_than_60_lines():
    long = [f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for path in PACKAGE.rglob("*.py") for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert long == []


def method_sections() -> tuple[set[str], dict[str, int]]:
    """The numbered headings of docs/method.md ('3', '3.3', ...) and the number of items of each
    section's numbered list ('9' -> 24)."""
    text = (REPO / "docs" / "method.md").read_text()
    headings, items, current = set(), {}, None
    for line in text.splitlines():
        heading = re.match(r"#{2,4} (\d+(?:\.\d+)?)\.? ", line)
        if heading:
            current = heading.group(1)
            headings.add(current)
        elif current and (item := re.match(r"(\d+)\. ", line)):
            items[current] = max(items.get(current, 0), int(item.group(1)))
    return headings, items


REFERENCE = re.compile(r"docs/method\.md\s*§(\d+(?:\.\d+)?)(?:\s+item\s+(\d+))?")


def references() -> list[tuple[str, str, str | None]]:
    """Every ``docs/method.md §X`` (and ``§X item N``) reference in the code, tests, config and docs."""
    found = []
    for path in [*REPO.glob("*.py"), *REPO.glob("*.md"), *(p for d in ("walign", "tests", "scripts", "benchmarks",
                                                                      "sweeps", "conf", "docs", "hydra_plugins",
                                                                      "examples") for p in (REPO / d).rglob("*")
                                                        if p.suffix in (".py", ".md", ".yaml", ".sh"))]:
        for match in REFERENCE.finditer(path.read_text(errors="replace")):
            found.append((str(path.relative_to(REPO)), match.group(1), match.group(2)))
    return found


def test_every_method_reference_names_a_section_that_exists():
    headings, items = method_sections()
    found = references()
    assert len(found) > 20  # the code cites the method page throughout
    missing = [f"{where}: §{section}" + (f" item {item}" if item else "") for where, section, item in found
               if section not in headings or (item and int(item) > items.get(section, 0))]
    assert missing == []


# spelled in pieces, so this file does not match itself
OUTSIDE = re.compile("|".join([r"\bSP" + r"EC\b", r"SP" + r"EC\.md", r"\.\./sha" + "red", "sha" + "red/data",
                               "sha" + "red/reference"]))


def test_nothing_cites_a_specification_outside_the_repository():
    cited = [str(p.relative_to(REPO)) for d in ("walign", "tests", "scripts", "benchmarks", "sweeps", "conf", "docs",
                                                "hydra_plugins", "examples")
             for p in (REPO / d).rglob("*") if p.is_file() and p.suffix in (".py", ".md", ".yaml", ".sh", ".toml")
             and OUTSIDE.search(p.read_text(errors="replace"))]
    cited += [name for name in ("README.md", "main.py", "setup.cfg")
              if OUTSIDE.search((REPO / name).read_text())]
    assert cited == []


@pytest.mark.parametrize("group", ["dataset", "rule"])
def test_config_comments_name_every_registered_choice(group):
    from walign.datasets import DATASETS
    from walign.rules import RULES
    comments = " ".join(line.partition("#")[2] for line in (REPO / "conf" / "config.yaml").read_text().splitlines())
    # walign's own choices (an installed plugin's are listed by the one-line error instead)
    if group == "dataset":
        names = {n for n, cls in DATASETS.items() if cls.__module__.startswith("walign.")}
    else:
        names = {n for n, impls in RULES.items() if any(c.__module__.startswith("walign.") for c in impls.values())}
        names -= {"gd_wstar"}  # chosen by task=alignment, which the comments name
    assert {n for n in names if not re.search(rf"\b{n}\b", comments)} == set()
