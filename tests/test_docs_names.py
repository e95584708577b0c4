"""What the documentation names exists: its links and anchors, settings, commands and options.

A new user types what the README and docs/ show; a renamed option, setting or heading left behind
in one of them is a command that fails or a link that lands nowhere.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer

from model.settings import setting_variables
from paidan.cli import app

ROOT = Path(__file__).resolve().parents[1]
PAGES = [
    ROOT / "README.md",
    ROOT / "SECURITY.md",
    *sorted((ROOT / "docs").glob("*.md")),
    ROOT / "benchmarks" / "README.md",
    ROOT / "data" / "README.md",
]
# The misspelling the README gives as an example of a name paidan refuses.
NOT_SETTINGS = {"PAIDAN_API_KEY"}
# Options the docs give to other programs (pip, pytest, curl, uvicorn, dask, systemctl, valgrind,
# py-spy, git), and --encoding, which inputs.md says paidan does not have.
OTHER_PROGRAMS_OPTIONS = {
    "--detach", "--dist", "--factory", "--fail", "--find-links", "--index-url", "--no-index", "--now",
    "--nworkers", "--only-binary", "--platform", "--python-version", "--subprocesses", "--tool",
    "--help", "--encoding", "--compressed",
}  # fmt: skip
FENCE = re.compile(r"^```.*?^```", flags=re.MULTILINE | re.DOTALL)


def page_id(page: Path) -> str:
    return str(page.relative_to(ROOT))


def anchors(text: str) -> set[str]:
    """The fragments a page answers: GitHub's slug of each heading, and each ``<a id="…">``."""
    found: set[str] = set(re.findall(r'<a id="([^"]+)"', text))
    seen: dict[str, int] = {}
    for heading in re.findall(r"^#{1,6} +(.+?) *$", FENCE.sub("", text), flags=re.MULTILINE):
        words = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "")
        slug = re.sub(r"[^\w\- ]", "", words.lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        found.add(slug if n == 0 else f"{slug}-{n}")
    return found


def broken_links(page: Path, text: str) -> list[str]:
    """Each relative link of ``text`` (as ``page``) whose file or anchor does not exist."""
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", FENCE.sub("", text)):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, fragment = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif fragment and fragment not in anchors(dest.read_text(encoding="utf-8")):
            broken.append(f"{target}: no such heading or anchor")
    return broken


def spans(text: str) -> list[str]:
    """Inline code, and each line of a code block (a line continued by ``\\`` joined to the next)."""
    found = re.findall(r"`([^`\n]+)`", FENCE.sub("", text))
    for block in FENCE.findall(text):
        found += re.sub(r"\\\n", " ", block).splitlines()[1:-1]
    return found


def commands() -> dict[str, set[str]]:
    """Each command's words (``train``, ``models list``) → every option it takes, global ones too."""
    group = typer.main.get_command(app)
    both = {o for p in group.params for o in [*p.opts, *p.secondary_opts]}
    found: dict[str, set[str]] = {}

    def walk(cmd: object, words: list[str]) -> None:
        for name, sub in getattr(cmd, "commands", {}).items():
            found[" ".join([*words, name])] = both | {
                o for p in sub.params for o in [*p.opts, *p.secondary_opts]
            }
            walk(sub, [*words, name])

    walk(group, [])
    return found


def unknown_options(text: str) -> list[str]:
    """``paidan CMD … --opt`` in a code span where CMD takes no ``--opt``, or CMD is no command."""
    known = commands()
    wrong = []
    for span in spans(text):
        m = re.search(r"\bpaidan(?: -v| --verbose)? ((?:models |db )?[a-z][a-z-]*)", span)
        if not m or m.group(1) in {"nightly"}:  # `Description=paidan nightly retrain`
            continue
        words = m.group(1)
        if words not in known:
            wrong.append(f"`{span}`: paidan has no command {words!r}")
            continue
        rest = span[m.end() :].split(" #")[0].split("|")[0].split("&&")[0]
        # A command substitution's options are another program's: $(date -d '90 days ago' +%F).
        rest = re.sub(r"\$\([^)]*\)", "", rest)
        wrong += [
            f"`{span}`: paidan {words} has no {option}"
            for option in re.findall(r"(?<![\w-])(--?[a-z][a-z0-9-]*)", rest)
            if option not in known[words]
        ]
    return wrong


def unknown_script_options(text: str) -> list[str]:
    """``benchmarks/x.py … --opt`` in a code span where the script defines no ``--opt``."""
    wrong = []
    for span in spans(text):
        m = re.search(r"(?<![\w/])(benchmarks/[\w/]+\.py)", span)
        if not m or not (ROOT / m.group(1)).exists():
            continue
        source = (ROOT / m.group(1)).read_text(encoding="utf-8")
        wrong += [
            f"`{span}`: {m.group(1)} has no {option}"
            for option in re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", span[m.end() :])
            if f'"{option}"' not in source
        ]
    return wrong


def unknown_options_anywhere(text: str) -> list[str]:
    """``--opt`` anywhere in ``text`` that no paidan command and no benchmark script takes."""
    known = set().union(*commands().values()) | OTHER_PROGRAMS_OPTIONS
    scripts = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "benchmarks").rglob("*.py"))
    named = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", text))
    return sorted(o for o in named - known if f'"{o}"' not in scripts)


def missing_paths(text: str) -> list[str]:
    """Repository paths in code spans (``benchmarks/results/x.json``) that do not exist."""
    tops = "model|training|serve|paidan|data|notebooks|benchmarks|tests|docs"
    named = {
        m.group(1)
        for span in spans(text)
        for m in re.finditer(rf"(?<![\w/.])((?:{tops})/[\w./*-]*\w)", span)
    }
    # paidan/_data is where the wheel carries data/ (pyproject.toml), not a folder of the checkout.
    return sorted(p for p in named - {"paidan/_data"} if not list(ROOT.glob(p)))


def unknown_variables_named(text: str) -> list[str]:
    """``PAIDAN_*`` names in ``text`` that are no setting (``PAIDAN_MAX_*`` names a family)."""
    named = set(re.findall(r"\bPAIDAN_[A-Z0-9_]*[A-Z0-9](?![A-Z0-9_]*\*)", text))
    return sorted(named - set(setting_variables()) - NOT_SETTINGS)


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_every_link_and_anchor_resolves(page: Path) -> None:
    assert broken_links(page, page.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_every_repository_path_named_exists(page: Path) -> None:
    assert missing_paths(page.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_every_paidan_variable_named_is_a_setting(page: Path) -> None:
    assert unknown_variables_named(page.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_every_option_shown_with_a_command_is_one_of_its_options(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    assert unknown_options(text) + unknown_script_options(text) == []
    assert unknown_options_anywhere(text) == []


def undocumented_options(text: str) -> list[str]:
    """Each command's options that ``text`` never names (``--no-x`` is named with ``--x``)."""
    shell = {"--help", "--install-completion", "--show-completion"}
    missing = []
    for words, options in commands().items():
        for option in sorted(options - shell):
            if not option.startswith("--"):
                continue
            names = {option, option.replace("--no-", "--", 1), "--no-" + option[2:]}
            if not any(re.search(re.escape(n) + r"(?![\w-])", text) for n in names):
                missing.append(f"paidan {words} {option}")
    return missing


def test_every_option_of_every_command_is_documented() -> None:
    # README calls docs/ "the reference: every command's options"; train's --seed and
    # --target-precision and predict's --top-k were in --help alone.
    text = "\n".join(page.read_text(encoding="utf-8") for page in PAGES)
    assert undocumented_options(text) == []


def test_the_checks_find_what_they_look_for(tmp_path: Path) -> None:
    # The tests above pass on clean pages; each check must still see a wrong name when there is one.
    page = tmp_path / "p.md"
    page.write_text("# Time zones\n", encoding="utf-8")
    assert broken_links(page, "[a](p.md#time-zones) [b](p.md#timezones) [c](q.md)") == [
        "p.md#timezones: no such heading or anchor",
        "q.md: no such file",
    ]
    assert unknown_variables_named("PAIDAN_MAX_* and PAIDAN_TOP_K, PAIDAN_TOPK") == ["PAIDAN_TOPK"]
    assert unknown_options("`paidan label x.csv --out y.csv --resum`, `paidan lable`") == [
        "`paidan label x.csv --out y.csv --resum`: paidan label has no --resum",
        "`paidan lable`: paidan has no command 'lable'",
    ]
    assert unknown_options("```sh\npaidan models gc \\\n    --keep 5 --kep 3\n```") == [
        "`paidan models gc      --keep 5 --kep 3`: paidan models gc has no --kep"
    ]
    assert missing_paths("`benchmarks/results/summary.json`, `model/setings.py`") == [
        "model/setings.py"
    ]
    assert unknown_options_anywhere("`--timezone` of train, `--time-zone`") == ["--time-zone"]
    assert "paidan models gc --keep" in undocumented_options("`--verbose`")
    assert "paidan models gc --keep" not in undocumented_options("`gc --keep 5`")
    assert unknown_script_options("`benchmarks/accuracy.py --taxonomy --taxonmy`") == [
        "`benchmarks/accuracy.py --taxonomy --taxonmy`: benchmarks/accuracy.py has no --taxonmy"
    ]


@pytest.mark.parametrize(
    ("row", "schema"),
    [
        ("| `POST /v1/route` |", "RouteResponse"),
        ("| `POST /v1/route/batch` |", "RouteBatchResponse"),
        ("| `GET /v1/model` (and `HEAD`) |", "ModelInfo"),
    ],
)
def test_the_api_table_names_every_field_of_an_answer(row: str, schema: str) -> None:
    # GET /v1/model answered `created`, `config` and `libraries`, which api.md's table, the
    # reference of its answer, did not name.
    from serve import schemas

    text = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    line = next(x for x in text.splitlines() if x.startswith(row))
    fields = getattr(schemas, schema).model_fields
    assert [f for f in fields if not re.search(rf"\b{f}\b", line)] == []
