"""Benchmark reports a user can look at: every run writes, under `loadtest/results/`,

- `<name>.json`: what ran (command, machine, time), each run's raw figures, the tables and the
  data behind every plot;
- `<name>.md`: the tables (also printed), with the plots linked;
- `<name>-<plot>.png`: the plots (matplotlib, no display needed).

A run overwrites the previous files of its name, so the directory holds the latest sitting.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import platform
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

from loadtest.stats import median_of

__all__ = ["RESULTS", "Report", "Row", "machine"]

RESULTS = Path(os.environ.get("BENCH_RESULTS", Path(__file__).resolve().parent / "results"))

Row = tuple[str, str, str]
"""A figure's label, the result attribute holding it, and its format."""


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


@dataclasses.dataclass
class _Plot:
    slug: str
    title: str
    xlabel: str
    ylabel: str
    series: dict[str, tuple[list[float], list[float]]]
    log_x: bool = False


class Report:
    def __init__(self, name: str, title: str) -> None:
        self.name = name
        self.title = title
        self.runs: list[Any] = []
        self.tables: list[tuple[str, list[str], list[list[str]]]] = []
        self.plots: list[_Plot] = []
        self.notes: list[str] = []
        print(title, flush=True)

    def run(self, label: str, result: Any) -> None:
        """Keep one run's raw result (a dataclass) and print it as it ends."""
        raw = (
            dataclasses.asdict(result)
            if dataclasses.is_dataclass(result) and not isinstance(result, type)
            else result
        )
        self.runs.append({"label": label, **raw})
        print(f"  {label}: {result}", flush=True)

    def table(self, caption: str, header: list[str], rows: list[list[str]]) -> None:
        self.tables.append((caption, header, rows))
        print("\n".join(_markdown_table(caption, header, rows)), flush=True)

    def figures(
        self, columns: Mapping[str, Sequence[Any]], rows: list[Row], caption: str = ""
    ) -> None:
        """A table of medians: one row per figure, one column per group of runs."""
        body = [
            [label] + [fmt.format(median_of(runs, attr)) for runs in columns.values()]
            for label, attr, fmt in rows
        ]
        self.table(caption, ["figure", *columns], body)

    def plot(
        self,
        slug: str,
        title: str,
        xlabel: str,
        ylabel: str,
        series: dict[str, tuple[list[float], list[float]]],
        *,
        log_x: bool = False,
    ) -> None:
        self.plots.append(_Plot(slug, title, xlabel, ylabel, series, log_x))

    def plot_medians(
        self,
        slug: str,
        title: str,
        axes: tuple[str, str],
        xs: Sequence[float],
        groups: Sequence[Sequence[Any]],
        lines: Sequence[tuple[str, str]],
    ) -> None:
        """One line per `(label, attribute)`: the median over each group's runs, against `xs`."""
        self.plot(
            slug,
            title,
            *axes,
            {label: (list(xs), [median_of(g, attr) for g in groups]) for label, attr in lines},
        )

    def note(self, text: str) -> None:
        self.notes.append(text)
        print(text, flush=True)

    def write(self, directory: Path = RESULTS) -> list[Path]:
        directory.mkdir(parents=True, exist_ok=True)
        written = [self._png(directory, plot) for plot in self.plots]
        md = directory / f"{self.name}.md"
        lines = [f"# {self.name}", "", self.title, "", f"`{_command()}` — {_when()}", ""]
        for caption, header, rows in self.tables:
            lines += [*_markdown_table(caption, header, rows), ""]
        lines += [*self.notes, ""] if self.notes else []
        lines += [f"![{p.title}]({self.name}-{p.slug}.png)" for p in self.plots]
        md.write_text("\n".join(lines).rstrip() + "\n")
        js = directory / f"{self.name}.json"
        js.write_bytes(
            orjson.dumps(
                {
                    "name": self.name,
                    "title": self.title,
                    "command": _command(),
                    "machine": machine(),
                    "finished_at": _when(),
                    "runs": self.runs,
                    "tables": [{"caption": c, "header": h, "rows": r} for c, h, r in self.tables],
                    "plots": [dataclasses.asdict(p) for p in self.plots],
                    "notes": self.notes,
                },
                option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY,
            )
        )
        written = [js, md, *written]
        print("report: " + ", ".join(str(p) for p in written), flush=True)
        return written

    def _png(self, directory: Path, plot: _Plot) -> Path:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot

        figure, axes = pyplot.subplots(figsize=(8, 4.5), dpi=100)
        for label, (xs, ys) in plot.series.items():
            axes.plot(xs, ys, marker="o" if len(xs) <= 12 else None, label=label)
        axes.set_title(plot.title)
        axes.set_xlabel(plot.xlabel)
        axes.set_ylabel(plot.ylabel)
        if plot.log_x:
            axes.set_xscale("log")
        axes.grid(True, alpha=0.3)
        if len(plot.series) > 1:
            axes.legend()
        figure.text(0.99, 0.01, machine(), ha="right", va="bottom", fontsize=7, alpha=0.6)
        figure.tight_layout()
        path = directory / f"{self.name}-{plot.slug}.png"
        figure.savefig(path)
        pyplot.close(figure)
        return path


def _markdown_table(caption: str, header: list[str], rows: list[list[str]]) -> list[str]:
    lines = [caption, ""] if caption else []
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _command() -> str:
    return " ".join(["python", *sys.argv]) if sys.argv and sys.argv[0] else "python"


def _when() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
