"""Plots and a short HTML summary of an evaluation (`identity eval --out DIR`)."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from identity.serialize import to_json

if TYPE_CHECKING:
    from identity.services.accuracy.evaluate import EvalReport


def write_report(result: EvalReport, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")  # files only; never a window
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    figures, curves = result.figures, result.curves
    written = []
    cmc = figures.identification.cmc if figures.identification else []
    if cmc:
        fig, ax = plt.subplots(figsize=(5, 4))
        ranks = list(range(1, len(cmc) + 1))
        ax.plot(ranks, [100 * v for v in cmc], marker="o")
        ax.set(xlabel="rank", ylabel="identification rate (%)", title=f"CMC — {figures.model}", xticks=ranks)
        ax.grid(alpha=0.3)
        written.append(_save(fig, out / "cmc.png"))
    if curves is not None:
        fig, ax = plt.subplots(figsize=(5, 4))
        far, tar = curves.far, curves.tar
        points = [(f, t) for f, t in zip(far, tar) if f > 0]
        ax.plot([p[0] for p in points], [100 * p[1] for p in points])
        ax.set_xscale("log")
        ax.set(xlabel="false accept rate", ylabel="true accept rate (%)", title=f"ROC — {figures.model}")
        ax.grid(alpha=0.3, which="both")
        written.append(_save(fig, out / "roc.png"))
    if curves is not None:
        fig, ax = plt.subplots(figsize=(6, 4))
        genuine = [s for s in curves.genuine if s > -1]
        impostor = [s for s in curves.impostor if s > -1]
        ax.hist(impostor, bins=80, alpha=0.6, label="impostor pairs", density=True)
        ax.hist(genuine, bins=80, alpha=0.6, label="genuine pairs", density=True)
        chosen = figures.threshold_at_far.get("0.001")
        if chosen:
            ax.axvline(
                chosen.threshold, color="k", linestyle="--", label=f"threshold @ FAR 1e-3 = {chosen.threshold:.3f}"
            )
        ax.set(xlabel="cosine similarity", ylabel="density", title="genuine vs impostor scores")
        ax.legend()
        written.append(_save(fig, out / "scores.png"))
    summary = out / "summary.html"
    report = to_json(result)  # the table and report.json hold what `identity eval --json` prints
    rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td><code>{html.escape(json.dumps(v))}</code></td></tr>"
        for k, v in report.items()
    )
    images = "".join(f'<img src="{p.name}" alt="{p.stem}">' for p in written)
    summary.write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><title>identity eval</title>"
        f"<style>body{{font-family:system-ui;margin:2rem}}td,th{{text-align:left;padding:.2rem .6rem;"
        f"border-bottom:1px solid #ddd}}img{{max-width:32%;margin:.5rem}}</style></head><body>"
        f"<h1>Evaluation of {html.escape(figures.model)}</h1>{images}<table>{rows}</table>"
        f"</body></html>",
        encoding="utf-8",
    )
    (out / "report.json").write_text(json.dumps(report, indent=2))
    return written + [summary, out / "report.json"]


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path
