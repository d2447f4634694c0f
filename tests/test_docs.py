"""The documentation (README.md and docs/*.md) against the repository: fast, no network, no training.

1. Links. Every relative Markdown link, ``[text](path)`` or ``![alt](path)``, must point at a file
   or folder of the repository, resolved from the folder of the .md file that holds it. A link
   with an anchor into a .md file (``other.md#some-heading``), and a link that is only an anchor
   (``#some-heading``, into the same file), must name one of that file's headings, slugged the way
   GitHub does it (see ``slug``). http(s) and mailto links are not checked.

2. Paths in backticks. An inline code span outside fenced blocks counts as a path when it starts
   with a top-level entry of the repository (``PATH_PREFIXES``). It must exist. Not paths, and so
   not checked: spans with a space, a wildcard (``*``), a ``<placeholder>``, ``...``, ``{`` or
   ``$``. A ``:line`` suffix is dropped. The one exception is ``results/``: run outputs land there
   and are not committed, so a path under ``results/`` must exist only when it is under
   ``results/cpu-reproduction/``, the committed report.

3. Commands. Every ``python main.py`` line of a ```bash block in README.md is given to walign with
   ``--cfg job`` appended (in a subprocess, cwd = the repository root): walign then checks every
   key, rule, data set and option name of the line, prints the composed config and trains
   nothing. It must exit 0. See ``checked_args`` for how a line is turned into arguments: ``-m``
   sweeps, SLURM-only arguments, shell variables and the example rule plugin. A line followed by a
   ``walign: error: ...`` line shows a mistake: it is run as written (no ``--cfg job``; walign
   refuses it before anything is written, into a temporary ``results_dir``), and must exit 2 with
   that line on stderr. With ``WALIGN_DOCS_ALL=1`` the bash blocks of docs/*.md are run the same
   way (a few minutes: each line is a Python start).

4. Dotted names. A backticked ``walign.x.y`` (or a call of it, ``walign.x.y(...)``) must import: a
   module, or an attribute of one.

5. Test names. A backticked ``test_...`` name in docs/guarantees.md must be a test function in
   tests/ (elsewhere such names are fields, like ``test_acc``).
"""
from __future__ import annotations

import importlib
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PATH_PREFIXES = ("walign/", "conf/", "sweeps/", "tests/", "benchmarks/", "examples/", "scripts/", "docs/",
                 "results/", "hydra_plugins/", ".ci/", "main.py", "setup.cfg", "README.md")
COMMITTED_RESULTS = "results/cpu-reproduction/"
NOT_A_PATH = re.compile(r"\s|\*|<[^>]*>|\.\.\.|…|\{|\$")
FENCE = re.compile(r"^\s*(```|~~~)")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")
ENV_STAND_INS = {"USER": "user", "HOME": "/home/user"}   # environment variables the docs may name
PLUGIN = "my_rule"                                       # examples/my_rule: made importable for its lines
SLURM_ONLY = re.compile(r"^\+?(launcher=slurm$|hydra\.launcher\.)")


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


# ----------------------------------------------------------------------------- Markdown reading
def prose_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, text) of the lines outside fenced code blocks."""
    out, fenced = [], False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            out.append((number, line))
    return out


def without_code_spans(line: str) -> str:
    return CODE_SPAN.sub("", line)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup dropped, lower case, every character that is not a
    letter, digit, '_', '-' or space removed, spaces turned into '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link counts by its text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").strip().lower()
    text = "".join(c for c in text if c.isalnum() or c in "_- ")
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a Markdown file, with GitHub's -1, -2 for repeated headings."""
    found, seen = set(), {}
    for _, line in prose_lines(path):
        match = re.match(r"^ {0,3}#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match:
            base = slug(match.group(1))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(path: Path) -> list[tuple[int, str]]:
    return [(number, target) for number, line in prose_lines(path)
            for target in LINK.findall(without_code_spans(line))]


def code_spans(path: Path) -> list[tuple[int, str]]:
    return [(number, match.group(2).strip()) for number, line in prose_lines(path)
            for match in CODE_SPAN.finditer(line)]


# ----------------------------------------------------------------------------- 1. links
def test_every_link_points_at_a_file_and_heading_that_exist():
    problems = []
    for doc in DOCS:
        for number, target in links(doc):
            if re.match(r"^(https?:|mailto:)", target):
                continue
            where = f"{rel(doc)}:{number}: {target}"
            file_part, _, anchor = target.partition("#")
            goal = (doc.parent / file_part).resolve() if file_part else doc
            if not goal.exists():
                problems.append(f"{where}: no such file or folder")
                continue
            if ROOT not in goal.parents and goal != ROOT:
                problems.append(f"{where}: points outside the repository")
                continue
            if anchor and goal.suffix == ".md" and anchor not in anchors(goal):
                problems.append(f"{where}: no heading with anchor #{anchor} in {rel(goal)}")
    assert not problems, "broken links:\n" + "\n".join(problems)


# ----------------------------------------------------------------------------- 2. paths
def path_token(span: str) -> str | None:
    """The repository path a code span names, or None if it names none (see the module doc)."""
    if NOT_A_PATH.search(span) or not span.startswith(PATH_PREFIXES):
        return None
    if span in ("main.py", "setup.cfg", "README.md") or span.startswith(("main.py:", "setup.cfg:", "README.md:")) \
            or "/" in span:
        return re.sub(r":\d+(-\d+)?$", "", span)
    return None  # e.g. main.pyx: starts like a top-level file but is another name


def test_every_path_in_backticks_exists():
    problems = []
    for doc in DOCS:
        for number, span in code_spans(doc):
            path = path_token(span)
            if path is None:
                continue
            if path.startswith("results/") and not path.startswith(COMMITTED_RESULTS):
                continue  # a run's output: exists only after the run
            if not (ROOT / path).exists():
                problems.append(f"{rel(doc)}:{number}: `{span}` does not exist")
    assert not problems, "missing paths:\n" + "\n".join(problems)


# ----------------------------------------------------------------------------- 4. dotted names
def resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            target = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for attribute in parts[cut:]:
                target = getattr(target, attribute)
        except AttributeError:
            return False
        return True
    return False


def test_every_dotted_walign_name_imports():
    named = [(doc, number, span, match.group(1)) for doc in DOCS for number, span in code_spans(doc)
             if (match := re.fullmatch(r"(walign(?:\.\w+)+)(?:\(.*\))?", span))]
    problems = [f"{rel(doc)}:{number}: `{span}` does not import" for doc, number, span, name in named
                if not resolves(name)]
    assert not problems, "\n".join(problems)


# ----------------------------------------------------------------------------- 5. test names
def test_every_named_test_exists():
    defined = {name for path in (ROOT / "tests").glob("test_*.py")
               for name in re.findall(r"^\s*def (test_\w+)", path.read_text(encoding="utf-8"), re.M)}
    doc = ROOT / "docs" / "guarantees.md"
    named = [(number, span) for number, span in code_spans(doc) if re.fullmatch(r"test_\w+", span)]
    assert named, "docs/guarantees.md names no tests"
    problems = [f"{rel(doc)}:{number}: `{span}` is no test in tests/" for number, span in named if span not in defined]
    assert not problems, "\n".join(problems)


# ----------------------------------------------------------------------------- 3. commands
def bash_blocks(path: Path) -> list[list[tuple[int, str]]]:
    """The ```bash blocks of a file: (line number, logical line), continuation lines joined."""
    blocks, current, fenced = [], None, False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        fence = FENCE.match(line)
        if fence and not fenced:
            fenced, current = True, [] if line.strip().lstrip("`~").strip() in ("bash", "sh", "shell") else None
        elif fence:
            fenced = False
            if current is not None:
                blocks.append(current)
            current = None
        elif current is not None:
            if current and current[-1][1].endswith("\\"):
                current[-1] = (current[-1][0], current[-1][1][:-1] + " " + line.strip())
            else:
                current.append((number, line.strip()))
    return blocks


def split_values(value: str) -> list[str]:
    """A Hydra sweep value 'a,b,[1,2]' -> ['a', 'b', '[1,2]'] (commas inside brackets or quotes stay)."""
    parts, depth, quote, start = [], 0, None, 0
    for i, c in enumerate(value):
        if quote:
            quote = None if c == quote else quote
        elif c in "'\"":
            quote = c
        elif c in "[{(":
            depth += 1
        elif c in "]})":
            depth -= 1
        elif c == "," and depth == 0:
            parts.append(value[start:i])
            start = i + 1
    return parts + [value[start:]]


class Skip(Exception):
    """A command line that cannot be checked here; the message says why."""


def expand(line: str, variables: dict[str, str]) -> str:
    def one(match):
        name = match.group(1) or match.group(2)
        if name in variables:
            return variables[name]
        if name in ENV_STAND_INS:
            return ENV_STAND_INS[name]
        raise Skip(f"${name} is neither set in its block nor a known environment variable")
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", one, line)


def checked_args(line: str, variables: dict[str, str]) -> tuple[dict[str, str], list[str], bool]:
    """(environment assignments, main.py arguments, whether it is a sweep) for one command line.

    Shell variables set in the same block (``grid="..."``) are expanded, $USER and $HOME get
    stand-ins, anything else skips the line. ``launcher=slurm`` and ``hydra.launcher.*`` are dropped:
    they need SLURM, which this machine may not have. Hydra refuses ``--cfg`` together with ``-m``, so
    a sweep is checked as one config per row of its values (see ``jobs``)."""
    words = shlex.split(expand(line, variables), comments=True)
    env = {}
    while words and re.fullmatch(r"[A-Za-z_]\w*=.*", words[0]):
        name, _, value = words.pop(0).partition("=")
        env[name] = value
    assert words[:2] == ["python", "main.py"], line
    args = [w for w in words[2:] if w != "&" and not SLURM_ONLY.match(w)]
    sweep = "-m" in args or "--multirun" in args
    return env, [a for a in args if a not in ("-m", "--multirun")], sweep


def jobs(args: list[str], sweep: bool) -> list[list[str]]:
    """The argument lists to check: one, or for a sweep as many as its longest value list, row i
    taking value i of each list (cycling), so every value given is checked at least once."""
    if not sweep:
        return [args]
    split = []
    for arg in args:
        key, eq, value = arg.partition("=")
        split.append([f"{key}={v}" for v in split_values(value)] if eq and not arg.startswith("-") else [arg])
    rows = max(len(values) for values in split) if split else 1
    return [[values[i % len(values)] for values in split] for i in range(rows)]


def commands(path: Path) -> list[tuple[str, str, object]]:
    """(id, source line, what to run or a Skip) for every python main.py line of the file's bash blocks."""
    found = []
    for block in bash_blocks(path):
        variables = {}
        for index, (number, text) in enumerate(block):
            text = text[2:] if text.startswith("$ ") else text
            try:
                words = shlex.split(text, comments=True)
            except ValueError:  # not shell (an output line with an apostrophe)
                continue
            if len(words) == 1 and re.fullmatch(r"[A-Za-z_]\w*=.*", words[0]):
                name, _, value = words[0].partition("=")
                variables[name] = value
                continue
            if not re.match(r"^([A-Za-z_]\w*=\S*\s+)*python main\.py(\s|$)", text):
                continue
            after = block[index + 1][1] if index + 1 < len(block) else ""
            error = after[len("walign: error:"):].strip() if after.startswith("walign: error:") else None
            where = f"{rel(path)}:{number}"
            try:
                found.append((where, text, (checked_args(text, variables), error)))
            except Skip as why:
                found.append((where, text, why))
    return found


def plugin_env(tmp: Path) -> str:
    """A PYTHONPATH on which examples/my_rule is an installed rule plugin: its module, and a
    distribution's metadata with its entry point (what `pip install -e examples/my_rule` leaves)."""
    info = tmp / "site" / "walign_my_rule-0.1.0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: walign-my-rule\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text(f"[walign.rules]\n{PLUGIN} = {PLUGIN}\n")
    return os.pathsep.join([str(tmp / "site"), str(ROOT / "examples" / PLUGIN)])


def installed_plugin_rules() -> set[str]:
    from importlib.metadata import entry_points
    return {entry.name for entry in entry_points(group="walign.rules")}


def walign(args: list[str], env: dict[str, str], tmp: Path, mentions_plugin: bool) -> subprocess.CompletedProcess:
    environment = {**os.environ, "OMP_NUM_THREADS": "1", **env}
    paths = [str(ROOT / p) if not os.path.isabs(p) else p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if mentions_plugin:
        paths.append(plugin_env(tmp))
    if paths:
        environment["PYTHONPATH"] = os.pathsep.join(paths)
    return subprocess.run([sys.executable, "main.py", *args], cwd=ROOT, env=environment, text=True,
                          capture_output=True, timeout=300)


COMMAND_DOCS = [ROOT / "README.md"] + (sorted((ROOT / "docs").glob("*.md")) if os.environ.get("WALIGN_DOCS_ALL") == "1"
                                       else [])
COMMANDS = [command for doc in COMMAND_DOCS for command in commands(doc)]


def test_readme_shows_commands():
    """The command check below has something to check (a parsing slip would make it vacuous)."""
    readme = [c for c in COMMANDS if c[0].startswith("README.md:")]
    assert len(readme) >= 5 and any(not isinstance(c[2], Skip) and c[2][1] for c in readme)


@pytest.mark.parametrize("where, line, plan", COMMANDS, ids=[c[0] for c in COMMANDS])
def test_command_names_keys_the_config_knows(where, line, plan, tmp_path):
    if isinstance(plan, Skip):
        pytest.skip(f"{where}: {plan}")
    (env, args, sweep), error = plan
    mentions_plugin = PLUGIN in line
    if error is not None:  # a mistake shown with its message: refused before anything is written
        if not any(a.startswith("results_dir=") for a in args):
            args = [*args, f"results_dir={tmp_path / 'results'}"]
        proc = walign(["-m", *args] if sweep else args, env, tmp_path, mentions_plugin)
        assert proc.returncode == 2, f"{where}: `{line}` exited {proc.returncode}, expected 2:\n{proc.stderr[-2000:]}"
        said = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ""
        for name in installed_plugin_rules():  # plugin rules installed on this machine are listed too
            said = said.replace(f", {name}", "")
        assert said == f"walign: error: {error}", f"{where}: the documented message is not what walign says"
        assert not (tmp_path / "results").exists(), f"{where}: a refused command wrote files"
        return
    for job in jobs(args, sweep):
        proc = walign([*job, "--cfg", "job"] if "--cfg" not in job else job, env, tmp_path, mentions_plugin)
        assert proc.returncode == 0, (f"{where}: `{line}` is refused (checked as main.py {' '.join(job)} --cfg job):\n"
                                      f"{proc.stderr.strip()[-2000:]}")
