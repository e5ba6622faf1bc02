"""`make bench-check` reads the committed baseline's table and flags only what is worse than
its allowance (pure: no benchmark runs here)."""

from __future__ import annotations

from pathlib import Path

from loadtest.bench_check import BASELINE, FIGURES, compare, read_baseline


def test_the_committed_baseline_has_every_figure() -> None:
    baseline = read_baseline(BASELINE)
    assert {f.name for f in FIGURES} <= set(baseline)
    assert all(value > 0 for value in baseline.values())


def test_only_a_figure_worse_than_its_allowance_is_a_regression(tmp_path: Path) -> None:
    path = tmp_path / "bench-check.md"
    rows = [f"| {f.name} | 1,000.0 | +{f.allowed * 100:.0f} % |" for f in FIGURES]
    path.write_text("\n".join(["| figure | median | regression allowed |", "|---|---|---|", *rows]))
    baseline = read_baseline(path)
    assert baseline == {f.name: 1000.0 for f in FIGURES}
    within = {f.name: 1000.0 * (1 + f.allowed) - 1 for f in FIGURES}
    assert compare(within, baseline) == []
    first = FIGURES[0]
    worse = {**within, first.name: 1000.0 * (1 + first.allowed) + 1}
    (regression,) = compare(worse, baseline)
    assert regression.startswith(first.name)
    better = {f.name: 500.0 for f in FIGURES}
    assert compare(better, baseline) == []
