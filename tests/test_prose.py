"""The chapters' prose states no result by hand, and every glued value it shows is glued.

The rule (DEVELOPERS.md: every number in the prose is produced by executed code). In each markdown
cell of a chapter notebook, first remove what is not prose: fenced code, math (``$...$``,
``$$...$$``), inline code, MyST roles (``{glue:text}`name:.1f```, ``{cite}`key```, ``{doc}`x```),
link targets and bare URLs, and arXiv identifiers. In the text that is left, each of these is a
result typed by hand:

- a decimal number (``38.0``, ``0.54``),
- a percentage (``25 %``),
- a ``±`` next to a number (``38.0 ± 8.3``),
- a count of points (``by 1–3 points``, ``+2 pp``).

Integers alone (chapter and table numbers, epochs, dataset sizes) are not flagged. A result goes
into the prose through ``myst_nb.glue`` (shown with ``{glue:text}``) or a Markdown output built in
code; a setting is written as math (``$\\lambda = 0.3$``); a value quoted from a paper or a released
code stays only as an exact phrase of ``ALLOWED``, each with the reason it is not ours.
"""
import re
from pathlib import Path

import nbformat
import pytest

from mmdg.notebook import declared_parameters

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))

# exact phrases that may hold a typed number, each a fact about other work, not a result of ours
ALLOWED = [
    "mmaction2 1.2.0",  # Chapter 10: the version of the reference implementation the parity tests use
    "CC BY 4.0",  # Chapter 2: the licence of the phone_watch dataset
    "+0.6 to +2.3 points",  # Chapter 8: GMP's Table 3 (the paper's gains on RNA-Net and SimMMDG)
    "about 5 %",  # Chapters 8, 11: MER-DG's abstract (over standard fusion)
    "about 2 %",  # Chapter 8: MER-DG's abstract (over state-of-the-art methods)
]

# what is not prose, removed in this order (fences before inline code, $$ before $)
NOT_PROSE = [
    re.compile(r"^(```|~~~).*?^\1", re.S | re.M),  # fenced code and MyST directives
    re.compile(r"\$\$.*?\$\$", re.S),  # display math
    re.compile(r"(?<!\\)\$[^$\n]+?(?<!\\)\$"),  # inline math
    re.compile(r"\{[\w:-]+\}`[^`]*`"),  # MyST roles: glue, cite, doc, ref, ...
    re.compile(r"``[^`]*``|`[^`\n]*`"),  # inline code
    re.compile(r"\]\([^)]*\)"),  # link targets (the link text stays)
    re.compile(r"<?https?://\S+"),  # bare URLs
    re.compile(r"\barXiv[: ]\s*\d{4}\.\d{4,5}(v\d+)?", re.I),  # arXiv identifiers
]
NUMBER = r"[+\-−]?\d+(?:[.,]\d+)?"
HAND_TYPED = re.compile("|".join([
    r"\d+\.\d+",  # a decimal number
    rf"{NUMBER}\s*%",  # a percentage
    rf"{NUMBER}\s*±|±\s*{NUMBER}",  # a spread next to a number
    rf"{NUMBER}(?:\s*(?:–|-|to)\s*{NUMBER})?\s*(?:percentage\s+)?(?:points?|pp)\b",  # a count of points
]))
GLUE_ROLE = re.compile(r"\{glue(?::\w+)?\}`([^`]+)`")
GLUE_DIRECTIVE = re.compile(r"^(?:```|~~~)\{glue(?::\w+)?\}\s+(\S+)", re.M)
GLUE_CALL = re.compile(r"\bglue\(\s*(?:name\s*=\s*)?[\"']([^\"']+)[\"']")


def prose(markdown: str) -> str:
    """``markdown`` without what is not prose (see the module doc), the allowed phrases blanked."""
    for pattern in NOT_PROSE:
        markdown = pattern.sub(" ", markdown)
    for phrase in ALLOWED:
        markdown = markdown.replace(phrase, " ")
    return markdown


def hand_typed(markdown: str) -> list[str]:
    """The hand-typed result expressions of one markdown cell, with a little context each."""
    text = prose(markdown)
    return [" ".join(text[max(0, m.start() - 40):m.end() + 20].split()) for m in HAND_TYPED.finditer(text)]


def glue_names_used(markdown: str) -> set[str]:
    """Names a markdown cell pastes with a glue role or directive (the format spec dropped)."""
    names = {key.rsplit(":", 1)[0] if ":" in key else key for key in GLUE_ROLE.findall(markdown)}
    return names | set(GLUE_DIRECTIVE.findall(markdown))


def glue_names_defined(code: str) -> set[str]:
    """Names that ``glue("name", ...)`` calls with a literal name in ``code`` define."""
    return set(GLUE_CALL.findall(code))


def glued_parameters(nb) -> set[str]:
    """The names ``mmdg.notebook.parameters(...)`` glues, if a code cell calls it: every parameter the
    notebook's parameters cell declares (``name: type = default``)."""
    if not any(c.cell_type == "code" and re.search(r"\bparameters\(\"\w+\", globals\(\)", c.source) for c in nb.cells):
        return set()
    declared = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    return set(declared_parameters(declared[0].source)) if declared else set()


def unglued(nb) -> set[str]:
    """Names the notebook's markdown pastes but none of its code cells glues."""
    used = set().union(*(glue_names_used(c.source) for c in nb.cells if c.cell_type == "markdown"))
    return used - glued_parameters(nb) - set().union(*(glue_names_defined(c.source) for c in nb.cells
                                                        if c.cell_type == "code"))


def cells(path: Path, kind: str) -> list:
    return [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == kind]


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_no_result_typed_by_hand_in_the_prose(path):
    found = [(c.get("id"), hit) for c in cells(path, "markdown") for hit in hand_typed(c.source)]
    assert not found, (f"{path.name}: results typed by hand in markdown cells (glue them, build the text in "
                       f"code, write settings as math, or add a quoted fact to ALLOWED with its reason): "
                       + "; ".join(f"cell {i}: …{hit}…" for i, hit in found))


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_every_glued_name_in_the_prose_is_glued_by_the_notebook(path):
    missing = unglued(nbformat.read(path, as_version=4))
    assert not missing, f"{path.name}: glue names used in markdown but never glued: {sorted(missing)}"


def test_the_rule_flags_typed_results_and_passes_glued_ones():
    assert hand_typed("With the defaults the accuracy is 37.5 % on the target.")
    assert hand_typed("m0 falls to near chance (25 %).") == ["m0 falls to near chance (25 %)."]
    assert hand_typed("Base trails by 38.0 ± 8.3") and hand_typed("lower by 1–3 points, more than the spread")
    assert hand_typed("the drop is −2.3") and hand_typed("GMP gains +2 pp")
    glued = ("With the defaults the accuracy is {glue:text}`acc:.1f` % ({glue:text}`acc_std:.1f` points "
             "of spread), $\\lambda = 0.3$, `imbalance=0.8`, [Chapter 5](05_gmp_reproduced.ipynb), "
             "arXiv 2605.06643, Table 2, 5 seeds, 20 epochs, {cite}`li2026gmp`.\n\n```bash\nlr 0.001\n```")
    assert hand_typed(glued) == []
    # an allowed phrase is blanked only as a whole
    assert hand_typed("mmaction2 1.2.0's modules") == [] and hand_typed("mmaction2 1.3.0")


def test_glue_names_are_read_from_roles_directives_and_calls():
    markdown = "a {glue:text}`acc:.1f` b {glue}`fig` c {glue:md}`note`\n\n```{glue:figure} curve\n```"
    assert glue_names_used(markdown) == {"acc", "fig", "note", "curve"}
    code = 'glue("acc", 1.0, display=False)\nglue(name="fig", variable=fig)\nprint("glue")'
    assert glue_names_defined(code) == {"acc", "fig"}


def test_a_pasted_name_that_no_cell_glues_is_found():
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("accuracy {glue:text}`acc:.1f` %, spread {glue:text}`spread:.1f`"),
        nbformat.v4.new_code_cell('glue("acc", 37.5, display=False)')])
    assert unglued(nb) == {"spread"}
    nb.cells.append(nbformat.v4.new_code_cell('glue("spread", 1.2, display=False)'))
    assert unglued(nb) == set()
