"""The package's layering, checked on its source with ``ast``: each stage imports only from earlier ones.

Stages, in order (a module may import from its own stage and earlier ones):

    foundation (numerics, validation, files, figures, digits, posteriors) -> kernels -> log_qz -> decompose
    -> direct -> references -> log_px -> scenarios -> gradients -> bench -> auditing, testing
    -> commands, cli, __main__

``estimators/__init__.py`` is the public facade and exempt; importing the facade from inside the
package (``from .. import ESTIMATORS``) counts as importing the last stage. Also checked: no file of
the package or of the generated docs points at internal notes (``SPEC``, ``PERF.md``), and no module
but ``numerics.py`` defines log(2 pi) (one home per formula).
"""
from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "estimators"
STAGES = [
    {"numerics", "validation", "files", "figures", "digits", "posteriors"},
    {"kernels"},
    {"log_qz"},
    {"decompose"},
    {"direct"},
    {"references"},
    {"log_px"},
    {"scenarios"},
    {"gradients", "mig"},
    {"bench"},
    {"auditing", "testing"},
    {"commands", "cli", "__main__"},
]
FACADE = len(STAGES)  # the package itself (estimators/__init__.py): after every stage
STAGE_NAMES = ["foundation", "kernels", "log_qz", "decompose", "direct", "references", "log_px", "scenarios",
               "gradients", "bench", "auditing", "commands"]


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def _dotted(path: Path) -> list[str]:
    """estimators/log_qz/api.py -> ["estimators", "log_qz", "api"]; a package's __init__ -> the package."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return parts[:-1] if parts[-1] == "__init__" else parts


def stage_of(dotted: list[str]) -> int:
    """Stage index of an ``estimators...`` module path (the facade for ``estimators`` itself)."""
    if len(dotted) < 2:
        return FACADE
    for i, names in enumerate(STAGES):
        if dotted[1] in names:
            return i
    raise KeyError(f"module {'.'.join(dotted)} is in no stage: add it to STAGES in {Path(__file__).name}")


def _is_module(dotted: list[str]) -> bool:
    base = ROOT.joinpath(*dotted)
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def imported_modules(path: Path) -> list[tuple[int, list[str]]]:
    """(line, dotted target) of every import of the package in ``path``, relative or absolute."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = _dotted(path) if path.name == "__init__.py" else _dotted(path)[:-1]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name.split(".")) for alias in node.names
                    if alias.name.split(".")[0] == "estimators"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                target = base + (node.module.split(".") if node.module else [])
            elif node.module and node.module.split(".")[0] == "estimators":
                target = node.module.split(".")
            else:
                continue
            # ``from .. import kernels`` imports a module; ``from .. import ESTIMATORS`` a name of a package
            for alias in node.names:
                sub = target + [alias.name]
                out.append((node.lineno, sub if _is_module(sub) else target))
    return out


def layering_offenders() -> list[str]:
    offenders = []
    for path in _modules():
        if path == PACKAGE / "__init__.py":
            continue  # the public facade
        own = stage_of(_dotted(path))
        for line, target in imported_modules(path):
            if target[0] != "estimators":
                continue
            stage = stage_of(target)
            if stage > own:
                later = "the facade" if stage == FACADE else f"stage {STAGE_NAMES[stage]}"
                offenders.append(f"{path.relative_to(ROOT)}:{line} ({STAGE_NAMES[own]}) imports "
                                 f"{'.'.join(target)} ({later})")
    return offenders


def test_every_module_is_in_a_stage():
    for path in _modules():
        stage_of(_dotted(path))


def test_the_checker_resolves_relative_imports(tmp_path):
    """The parser itself: relative levels, submodules against names, absolute imports."""
    assert stage_of(["estimators", "log_qz", "api"]) == 2
    assert stage_of(["estimators"]) == FACADE
    api = PACKAGE / "log_qz" / "api.py"
    targets = [".".join(t) for _, t in imported_modules(api)]
    assert "estimators.posteriors" in targets and "estimators.log_qz.batch" in targets
    exact = PACKAGE / "log_qz" / "exact.py"
    assert "estimators.kernels" in [".".join(t) for _, t in imported_modules(exact)]


def test_the_checker_flags_a_later_stage(tmp_path, monkeypatch):
    """A fake package whose foundation imports a scenario, and a kernel the facade: both reported."""
    pkg = tmp_path / "estimators"
    for rel, text in {"__init__.py": "from .scenarios import make\n",
                      "numerics.py": "import math\nfrom .scenarios.registry import make\n",
                      "kernels/__init__.py": "from .. import SCENARIOS\nfrom ..numerics import x\n",
                      "scenarios/__init__.py": "", "scenarios/registry.py": "import estimators.kernels\n"}.items():
        (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
        (pkg / rel).write_text(text)
    this = sys.modules[__name__]
    monkeypatch.setattr(this, "ROOT", tmp_path)
    monkeypatch.setattr(this, "PACKAGE", pkg)
    offenders = layering_offenders()
    assert len(offenders) == 2, offenders
    assert offenders[0].startswith("estimators/kernels/__init__.py:1 (kernels) imports estimators (the facade)")
    assert offenders[1].startswith("estimators/numerics.py:2 (foundation) imports estimators.scenarios.registry")


def test_no_module_imports_from_a_later_stage():
    offenders = layering_offenders()
    assert not offenders, "imports from a later stage:\n" + "\n".join(offenders)


def package_files() -> list[Path]:
    """Every text file of the package: sources, the C kernel, data."""
    return sorted(p for p in PACKAGE.rglob("*") if p.is_file() and "__pycache__" not in p.parts
                  and p.suffix in (".py", ".c", ".h", ".md", ".txt", ".json", ".toml", ".cfg"))


def generated_docs() -> list[Path]:
    """The docs the package writes or ships: docs/ and the report's results/*.md."""
    docs = sorted((ROOT / "docs").rglob("*.md")) if (ROOT / "docs").is_dir() else []
    return docs + sorted((ROOT / "results").glob("*.md"))


INTERNAL_NOTES = re.compile(r"\bSPEC\b|\bPERF\.md\b")


def internal_note_offenders(files) -> list[str]:
    out = []
    for path in files:
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if INTERNAL_NOTES.search(line):
                out.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:100]}")
    return out


def test_no_package_file_points_at_internal_notes():
    offenders = internal_note_offenders(package_files())
    assert not offenders, "mentions of SPEC / PERF.md (internal notes users cannot read):\n" + "\n".join(offenders)


def test_no_generated_doc_points_at_internal_notes():
    offenders = internal_note_offenders(generated_docs())
    assert not offenders, "mentions of SPEC / PERF.md (internal notes users cannot read):\n" + "\n".join(offenders)


LOG_2PI_DEFINITION = re.compile(r"\bLOG_2PI\s*=(?!=)|log\(\s*2(\.0)?\s*\*\s*(math\.|np\.|numpy\.|torch\.)?pi\s*\)")


def formula_offenders() -> list[str]:
    out = []
    for path in _modules():
        if path == PACKAGE / "numerics.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if LOG_2PI_DEFINITION.search(line):
                out.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    return out


def test_log_2pi_is_defined_only_in_numerics():
    offenders = formula_offenders()
    assert not offenders, "log(2 pi) defined outside estimators/numerics.py:\n" + "\n".join(offenders)


@pytest.mark.parametrize("line,hit", [("LOG_2PI = math.log(2.0 * math.pi)", True), ("x = math.log(2 * math.pi)", True),
                                      ("c = np.log(2*np.pi)", True), ("if LOG_2PI == y:", False),
                                      ("from ..numerics import LOG_2PI", False), ("see the SPEC", False)])
def test_formula_pattern(line, hit):
    assert bool(LOG_2PI_DEFINITION.search(line)) is hit


@pytest.mark.parametrize("line,hit", [("SPEC: the rule", True), ("(SPEC, 'Exact references')", True),
                                      ("see PERF.md", True), ("SPECIFIC", False), ("spec", False),
                                      ("a SPECS list", False)])
def test_internal_notes_pattern(line, hit):
    assert bool(INTERNAL_NOTES.search(line)) is hit
