"""The ``paidan`` command line: parses options and calls plain functions in ``training`` and ``serve``.

This is the only module that sees both :mod:`training` and :mod:`serve`.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from model.artifact import ModelLoadError, load_router
from model.config import TrainingConfig
from model.settings import SettingsError, get_settings
from model.tickets import ColumnMap, TicketFileError
from training.validate import TrainingDataError

app = typer.Typer(
    name="paidan",
    help="派单: route citizen complaints to the responsible department and a category.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True)
out = Console()

# Errors a user can fix: printed as one line, exit code 2, no traceback.
USER_ERRORS = (TicketFileError, TrainingDataError, ModelLoadError, SettingsError, FileExistsError)

TextCol = Annotated[str, typer.Option("--text-col", help="Input column holding the ticket text")]
TitleCol = Annotated[str, typer.Option("--title-col", help="Input column holding the title")]
IdCol = Annotated[str, typer.Option("--id-col", help="Input column holding the ticket id")]
DeptCol = Annotated[
    str, typer.Option("--department-col", help="Input column holding the department label")
]
CatCol = Annotated[
    str, typer.Option("--category-col", help="Input column holding the category label")
]


def column_map(text: str, title: str, id_: str, department: str, category: str) -> ColumnMap:
    return ColumnMap(id=id_, title=title, text=text, department=department, category=category)


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log more")] = False,
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


class _RichProgress:
    """Adapts rich's progress bar to training's ``(stage, done, total)`` callback."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[str, int] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage not in self.tasks:
            self.tasks[stage] = self.progress.add_task(stage, total=total)
        self.progress.update(self.tasks[stage], completed=done, total=total)


def progress_bar() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=False,
        disable=not err.is_terminal,
    )


def fail(e: Exception) -> typer.Exit:
    err.print(f"[red]error:[/red] {e}", highlight=False, soft_wrap=True)
    return typer.Exit(2)


@app.command()
def train(
    data: Annotated[
        list[Path],
        typer.Argument(help="Labelled ticket files (CSV, XLSX, JSONL, Parquet) or directories"),
    ],
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", help="Model directory to write (default: <model root>/<version>)"),
    ] = None,
    force: Annotated[
        bool, typer.Option(help="Replace an existing non-empty --out directory")
    ] = False,
    strict: Annotated[
        bool, typer.Option(help="Refuse rare labels instead of merging them into 其他")
    ] = False,
    min_examples: Annotated[
        int, typer.Option(help="Labels with fewer rows are merged into 其他")
    ] = 5,
    target_precision: Annotated[
        float, typer.Option(help="Precision that auto decisions must reach on held-out folds")
    ] = 0.95,
    seed: Annotated[int, typer.Option(help="Seed of the cross-validation folds")] = 42,
    unlabelled: Annotated[
        list[Path] | None, typer.Option(help="Unlabelled ticket files that widen the vocabulary")
    ] = None,
    userdict: Annotated[
        Path | None, typer.Option(help="jieba user dictionary (default: the bundled one)")
    ] = None,
    stopwords: Annotated[
        Path | None, typer.Option(help="Stopword list (default: the bundled one)")
    ] = None,
    text_col: TextCol = "text",
    title_col: TitleCol = "title",
    id_col: IdCol = "id",
    department_col: DeptCol = "department",
    category_col: CatCol = "category",
) -> None:
    """Train a model on labelled tickets, cross-validate it and write its directory."""
    from training.train import train as run_train

    config = TrainingConfig(min_examples=min_examples, target_precision=target_precision, seed=seed)
    try:
        with progress_bar() as bar:
            result = run_train(
                data,
                out_dir,
                column_map(text_col, title_col, id_col, department_col, category_col),
                config,
                strict=strict,
                force=force,
                userdict=userdict,
                stopwords=stopwords,
                unlabelled=unlabelled or [],
                model_root=get_settings().model_root,
                progress=_RichProgress(bar),
            )
    except USER_ERRORS as e:
        raise fail(e) from None
    for warning in result.validation.warnings():
        err.print(f"[yellow]warning:[/yellow] {warning}", highlight=False, soft_wrap=True)
    table = Table(title=f"model {result.router.version}")
    for col in (
        "head",
        "rows",
        "labels",
        "macro-F1",
        "accuracy",
        "top-3",
        "ECE",
        "auto thr.",
        "auto prec.",
        "auto cov.",
    ):
        table.add_column(col)
    for name, cv in result.cv.items():
        r = cv.report
        table.add_row(
            name,
            str(r["n"]),
            str(len(cv.labels)),
            f"{r['macro_f1']:.3f}",
            f"{r['accuracy']:.3f}",
            f"{r['top3_accuracy']:.3f}",
            f"{r['ece']:.3f}",
            f"{cv.threshold:.3f}",
            f"{r['auto']['precision']:.3f}",
            f"{r['auto']['coverage']:.3f}",
        )
    out.print(table)
    out.print(
        f"cross-validated ({config.cv_folds} stratified folds, seed {config.seed}) on "
        f"{result.validation.rows_used} of {result.validation.rows_in} rows"
    )
    if result.model_dir:
        out.print(f"written to {result.model_dir}")


@app.command()
def evaluate(
    model_dir: Annotated[Path, typer.Argument(help="Model directory")],
    data: Annotated[list[Path], typer.Argument(help="Labelled ticket files")],
    report: Annotated[
        Path | None, typer.Option(help="Write the JSON report here (Markdown and PNGs beside it)")
    ] = None,
    text_col: TextCol = "text",
    title_col: TitleCol = "title",
    id_col: IdCol = "id",
    department_col: DeptCol = "department",
    category_col: CatCol = "category",
) -> None:
    """Score a model on labelled tickets; print the summary and write the report."""
    from training.evaluate import evaluate as run_evaluate

    try:
        result = run_evaluate(
            model_dir,
            data,
            report,
            column_map(text_col, title_col, id_col, department_col, category_col),
        )
    except USER_ERRORS as e:
        raise fail(e) from None
    table = Table(title=f"evaluation of {result['model_version']} on {result['n']} tickets")
    for col in ("head", "macro-F1", "accuracy", "top-3", "ECE", "auto prec.", "auto cov."):
        table.add_column(col)
    for head in ("department", "category"):
        if head in result:
            r = result[head]
            table.add_row(
                head,
                f"{r['macro_f1']:.3f}",
                f"{r['accuracy']:.3f}",
                f"{r['top3_accuracy']:.3f}",
                f"{r['ece']:.3f}",
                f"{r['auto']['precision']:.3f}",
                f"{r['auto']['coverage']:.3f}",
            )
    out.print(table)
    if report:
        out.print(f"report written to {report} and {report.with_suffix('.md')}")


@app.command()
def predict(
    model_dir: Annotated[Path, typer.Argument(help="Model directory")],
    text: Annotated[str, typer.Argument(help="Complaint text")],
    title: Annotated[str, typer.Option(help="Ticket title")] = "",
    top_k: Annotated[int, typer.Option(help="Candidates per head")] = 3,
) -> None:
    """Print one routing suggestion as JSON."""
    try:
        router, _ = load_router(model_dir)
    except USER_ERRORS as e:
        raise fail(e) from None
    result = router.predict([(title, text)], top_k=top_k)[0]
    sys.stdout.write(json.dumps(result.model_dump(), ensure_ascii=False, indent=2) + "\n")


if __name__ == "__main__":
    app()
