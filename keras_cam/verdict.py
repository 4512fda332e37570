"""Which explanation to trust: a verdict on an `EvaluationTable`, in plain words.

Every metric ranks the methods and the baselines (random maps, a centred Gaussian); a
family's rank is the mean of its metrics' ranks, and a method's overall rank the mean of its
families' ranks, so a family with many metrics (faithfulness) does not outvote one with few
(the sanity check). The recommended method has the best overall rank among the methods that
pass the sanity check and beat every baseline overall; the verdict names the metrics whose
best method is another one, the metrics on which a baseline beats every method, and the
sparseness of the maps, so that a better score that comes from a blurrier map shows.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import numpy as np

from keras_cam.sanity import UNCHANGED_CORRELATION

if TYPE_CHECKING:
    from keras_cam.evaluation import EvaluationTable

FAMILIES: dict[str, tuple[str, ...]] = {
    "faithfulness": (
        "average_drop", "increase_in_confidence", "remove_top_fraction", "keep_top_fraction",
        "deletion", "insertion", "road",
    ),
    "localization": ("box_iou", "box_iou_cam", "pointing_game", "energy_pointing_game"),
    "sanity": ("randomisation",),
}
"""The metric families the verdict ranks by. `sparseness` (complexity) is reported, not
ranked: a sparser map is not a more faithful one."""

MEASURES: dict[str, str] = {
    "average_drop": "confidence lost when the image is masked by the map",
    "increase_in_confidence": "share of images whose confidence rises under the map's mask",
    "remove_top_fraction": "relative confidence change when the map's top pixels are removed",
    "keep_top_fraction": "relative confidence change when only the map's top pixels are kept",
    "deletion": "area under the confidence curve as the map's pixels are deleted",
    "insertion": "area under the confidence curve as the map's pixels are inserted",
    "road": "ROAD: (least- minus most-relevant-first score) / 2, imputed removal",
    "box_iou": "IoU of the box around the map's top 25 % with the true box",
    "box_iou_cam": "IoU of the box around the map's region above 20 % of its peak",
    "pointing_game": "share of maps whose peak falls in the true box",
    "energy_pointing_game": "share of the map's energy inside the true box",
    "randomisation": "rank correlation with the map of the fully randomised model",
    "sparseness": "Gini index of the map: 1 = one pixel, 0 = uniform",
}
"""What each metric measures, in a line (README's table uses the same words)."""


@dataclasses.dataclass(frozen=True)
class Verdict:
    """The verdict on one evaluation.

    Attributes:
        ranking: `(name, overall rank)` of every method and baseline, best first.
        family_ranks: `{name: {family: mean rank}}`.
        recommended: the recommended method's name, or `None` when no method passes the
            sanity check and beats the baselines.
        failed_sanity: the methods whose maps survive randomisation (`randomisation` mean at
            or above `keras_cam.sanity.UNCHANGED_CORRELATION`).
        disagreements: one sentence per metric whose best method is not the recommended one.
        text: the verdict in Markdown: the ranking table and the sentences.
    """

    ranking: list[tuple[str, float]]
    family_ranks: dict[str, dict[str, float]]
    recommended: str | None
    failed_sanity: list[str]
    disagreements: list[str]
    text: str


def _ranks(values: list[float], higher_is_better: bool) -> np.ndarray:
    """1 for the best value, ties given their average rank."""
    keys = -np.asarray(values) if higher_is_better else np.asarray(values)
    return np.array([np.sum(keys < key) + (np.sum(keys == key) + 1) / 2 for key in keys])


def _format(value: float, unit: str) -> str:
    return f"{value:.1f} %" if unit == "percent" else f"{value:.3f}"


def verdict(table: EvaluationTable) -> Verdict:
    """Ranks the methods of `table` and its baselines, and recommends one, with reasons.

    Args:
        table: the result of `keras_cam.evaluate`.

    Returns:
        A `Verdict`; `table.summary()` is its `text`.

    Example:
    ```python
    table = kc.evaluate(model, images, labels, boxes)
    print(table.summary())
    kc.verdict.verdict(table).recommended   # e.g. "gradcam"
    ```
    """
    rows = [*table.successful_rows, *table.baseline_rows]
    baselines = {row["method"] for row in table.baseline_rows}
    names = [row["method"] for row in rows]
    display = {row["method"]: row["display_name"] for row in rows}
    higher = table.higher_is_better
    metric_ranks = {
        metric: _ranks([row[metric] for row in rows], higher[metric])
        for metric in table.metrics if any(metric in family for family in FAMILIES.values())
    }
    if not metric_ranks:  # e.g. sparseness alone: no rank to give, none made up
        text = (
            f"**No ranking**: none of the metrics evaluated ({', '.join(table.metrics)}) ranks "
            "the methods; add a faithfulness or localization metric (e.g. deletion, insertion, "
            "pointing_game) to get one."
        )
        return Verdict([], {name: {} for name in names}, None, [], [], text)
    family_ranks: dict[str, dict[str, float]] = {name: {} for name in names}
    for family, members in FAMILIES.items():
        present = [metric for metric in members if metric in metric_ranks]
        if present:
            mean = np.mean([metric_ranks[metric] for metric in present], axis=0)
            for name, rank in zip(names, mean):
                family_ranks[name][family] = float(rank)
    overall = {name: float(np.mean(list(ranks.values()) or [np.nan]))
               for name, ranks in family_ranks.items()}
    ranking = sorted(overall.items(), key=lambda item: item[1])
    by_name = {row["method"]: row for row in rows}
    failed = [
        name for name in names if name not in baselines and "randomisation" in by_name[name]
        and by_name[name]["randomisation"] is not None
        and by_name[name]["randomisation"] >= UNCHANGED_CORRELATION
    ]
    best_baseline = min((overall[name] for name in baselines), default=np.inf)
    candidates = [
        name for name, rank in ranking
        if name not in baselines and name not in failed and rank < best_baseline
    ]
    recommended = candidates[0] if candidates else None
    sentences = _sentences(
        table, rows, display, metric_ranks, recommended, baselines, failed, overall
    )
    disagreements = sentences["disagreements"]
    text = "\n".join(
        [_ranking_table(ranking, family_ranks, display, baselines), "", *sentences["all"]]
    )
    return Verdict(ranking, family_ranks, recommended, failed, disagreements, text)


def _ranking_table(
    ranking: list[tuple[str, float]],
    family_ranks: dict[str, dict[str, float]],
    display: dict[str, str],
    baselines: set[str],
) -> str:
    families = [family for family in FAMILIES if any(family in r for r in family_ranks.values())]
    lines = [
        "| rank | method | " + " | ".join(f"{family} rank" for family in families)
        + " | overall rank |",
        "| ---: | :--- | " + " | ".join("---:" for _ in families) + " | ---: |",
    ]
    for position, (name, rank) in enumerate(ranking, start=1):
        label = display[name] + (" (baseline)" if name in baselines else "")
        cells = [f"{family_ranks[name][family]:.2f}" for family in families]
        lines.append(f"| {position} | {label} | " + " | ".join(cells) + f" | {rank:.2f} |")
    return "\n".join(lines)


def _sentences(
    table: EvaluationTable,
    rows: list[dict[str, Any]],
    display: dict[str, str],
    metric_ranks: dict[str, np.ndarray],
    recommended: str | None,
    baselines: set[str],
    failed: list[str],
    overall: dict[str, float],
) -> dict[str, list[str]]:
    """The verdict's sentences: the recommendation, the disagreements, sanity, sparseness."""
    units, higher = table.units, table.higher_is_better
    by_name = {row["method"]: row for row in rows}
    methods = [row["method"] for row in rows if row["method"] not in baselines]
    lines, disagreements = [], []
    count = len(rows)
    if recommended is None:
        lines.append(
            f"**No method is recommended**: none both passes the sanity check and ranks above "
            f"the baselines overall (ranks 1 = best of {count})."
        )
    else:
        row = by_name[recommended]
        position = [r["method"] for r in rows].index(recommended)
        wins = [  # best alone: a tie with every method (e.g. all at 25 %) is no evidence
            metric for metric, ranks in metric_ranks.items()
            if ranks[position] == ranks.min() and np.sum(ranks == ranks.min()) == 1
        ]
        evidence = ", ".join(
            f"{metric} {_format(row[metric], units[metric])}" for metric in wins[:4]
        )
        lines.append(
            f"**Recommended: {display[recommended]}**: best overall rank "
            f"({overall[recommended]:.2f} of {count}, lower is better) among the methods "
            f"that pass the sanity check, ahead of every baseline"
            + (f"; best on {evidence}." if wins else ".")
        )
    names = [row["method"] for row in rows]
    for metric, ranks in metric_ranks.items():
        best = names[int(np.argmin(ranks))]
        if recommended is not None and best != recommended and ranks[names.index(
                recommended)] != ranks.min():
            sentence = (
                f"{metric} ({'higher' if higher[metric] else 'lower'} is better) prefers "
                f"{display[best]} ({_format(by_name[best][metric], units[metric])}) over "
                f"{display[recommended]} "
                f"({_format(by_name[recommended][metric], units[metric])})."
            )
            disagreements.append(sentence)
        method_ranks = [ranks[names.index(name)] for name in methods]
        if best in baselines and method_ranks and min(method_ranks) > ranks.min():
            disagreements.append(
                f"On {metric}, the baseline {display[best]} "
                f"({_format(by_name[best][metric], units[metric])}) beats every method: this "
                "metric does not tell the methods from a map that ignores the model here."
            )
    if disagreements:
        lines += ["", "Where the metrics disagree:", *[f"- {line}" for line in disagreements]]
    if failed:
        lines.append("")
        lines += [
            f"- Sanity check failed: {display[name]}'s maps correlate "
            f"{by_name[name]['randomisation']:.2f} (>= {UNCHANGED_CORRELATION}) with those of "
            "the fully randomised model: they do not depend on what it learned."
            for name in failed
        ]
    if "sparseness" in table.metrics and recommended is not None:
        mine = by_name[recommended]["sparseness"]
        others = ", ".join(
            f"{display[name]} {by_name[name]['sparseness']:.3f}" for name in methods
            if name != recommended
        )
        lines += ["", f"Sparseness (Gini, not ranked): {display[recommended]} {mine:.3f}"
                  + (f"; {others}." if others else ".")]
    return {"all": lines, "disagreements": disagreements}
