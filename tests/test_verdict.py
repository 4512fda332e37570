"""The verdict: rankings across metric families, baselines never recommended, on hand tables
and on a briefly trained demo model."""

import numpy as np
import pytest

import keras_cam as kc
from keras_cam import datasets
from keras_cam.demo_model import train_demo_model
from keras_cam.evaluation import EvaluationTable
from keras_cam.metrics import MetricResult
from keras_cam.verdict import verdict

DIRECTIONS = {"deletion": False, "insertion": True, "pointing_game": True,
              "randomisation": False, "sparseness": True}


def hand_table(values: dict[str, dict[str, float]], baselines: tuple[str, ...]) -> EvaluationTable:
    """An `EvaluationTable` of given means (one image each), baselines listed separately."""
    def results(name):
        return {
            metric: MetricResult(metric, np.array([value]), "fraction", DIRECTIONS[metric])
            for metric, value in values[name].items()
        }

    def row(name):
        return {"method": name, "display_name": name.title(), **values[name],
                "seconds_per_image": 0.0, "error": None}

    methods = [name for name in values if name not in baselines]
    metrics = tuple(next(iter(values.values())))
    return EvaluationTable(
        metrics, [row(name) for name in methods], {name: results(name) for name in methods}, 1,
        baseline_rows=[row(name) for name in baselines],
        baseline_results={name: results(name) for name in baselines},
    )


BASELINES = {
    "random": {"deletion": 0.5, "insertion": 0.3, "pointing_game": 0.1, "randomisation": 1.0,
               "sparseness": 0.3},
    "centred_gaussian": {"deletion": 0.45, "insertion": 0.4, "pointing_game": 0.3,
                         "randomisation": 1.0, "sparseness": 0.4},
}


def test_the_best_method_on_every_family_is_recommended_with_its_numbers():
    table = hand_table({
        "alpha": {"deletion": 0.2, "insertion": 0.7, "pointing_game": 0.9, "randomisation": 0.1,
                  "sparseness": 0.6},
        "beta": {"deletion": 0.3, "insertion": 0.6, "pointing_game": 0.8, "randomisation": 0.2,
                 "sparseness": 0.7},
        **BASELINES,
    }, tuple(BASELINES))
    result = verdict(table)
    assert result.recommended == "alpha"
    # alpha is first on all four ranked metrics: rank 1 in each family.
    assert result.ranking[0] == ("alpha", 1.0)
    assert result.family_ranks["beta"] == {"faithfulness": 2.0, "localization": 2.0,
                                           "sanity": 2.0}
    assert result.disagreements == []
    assert "**Recommended: Alpha**" in result.text and "deletion 0.200" in result.text
    assert "Random (baseline)" in result.text and "Centred_Gaussian (baseline)" in result.text
    assert "Sparseness (Gini, not ranked): Alpha 0.600; Beta 0.700." in result.text
    assert table.summary() == result.text


def test_disagreeing_metrics_are_named_and_a_baseline_winning_a_metric_is_said():
    table = hand_table({
        "alpha": {"deletion": 0.2, "insertion": 0.7, "pointing_game": 0.2, "randomisation": 0.1,
                  "sparseness": 0.5},
        "beta": {"deletion": 0.3, "insertion": 0.6, "pointing_game": 0.25, "randomisation": 0.2,
                 "sparseness": 0.5},
        **BASELINES,
    }, tuple(BASELINES))
    result = verdict(table)
    assert result.recommended == "alpha"
    assert result.disagreements == [
        "pointing_game (higher is better) prefers Centred_Gaussian (0.300) over Alpha (0.200).",
        "On pointing_game, the baseline Centred_Gaussian (0.300) beats every method: this "
        "metric does not tell the methods from a map that ignores the model here.",
    ]


def test_a_method_failing_the_sanity_check_is_not_recommended():
    table = hand_table({
        "edges": {"deletion": 0.1, "insertion": 0.9, "pointing_game": 1.0, "randomisation": 0.95,
                  "sparseness": 0.5},
        "alpha": {"deletion": 0.2, "insertion": 0.7, "pointing_game": 0.9, "randomisation": 0.1,
                  "sparseness": 0.5},
        **BASELINES,
    }, tuple(BASELINES))
    result = verdict(table)
    assert result.failed_sanity == ["edges"]
    assert result.recommended == "alpha"
    assert "Sanity check failed: Edges's maps correlate 0.95" in result.text


def test_no_method_is_recommended_when_none_beats_the_baselines():
    table = hand_table({
        "weak": {"deletion": 0.6, "insertion": 0.2, "pointing_game": 0.0, "randomisation": 0.3,
                 "sparseness": 0.5},
        **BASELINES,
    }, tuple(BASELINES))
    result = verdict(table)
    assert result.recommended is None
    assert "**No method is recommended**" in result.text


@pytest.mark.slow
def test_on_the_demo_model_the_recommendation_is_among_the_best_and_never_a_baseline():
    model, _ = train_demo_model(epochs=3, n_train=768, image_size=32)
    images, labels, boxes = datasets.shapes(24, 32, seed=1)
    table = kc.evaluate(
        model, images, labels, boxes, methods=("gradcam", "gradcam++", "cam"),
        metric_options={"deletion": {"steps": 8}, "insertion": {"steps": 8}},
    )
    result = verdict(table)
    assert result.recommended in {"gradcam", "gradcam++", "cam"}
    rows = {row["method"]: row for row in [*table.rows, *table.baseline_rows]}
    higher = table.higher_is_better
    ranked = [m for m in table.metrics if m not in ("sparseness",)]

    def beats(a, b, metric):
        first, second = rows[a][metric], rows[b][metric]
        return first > second if higher[metric] else first < second

    chosen = result.recommended
    # Recounted here from the table: the recommended method beats both baselines on most
    # metrics, and no other method beats it on most metrics.
    for baseline in ("random", "centred_gaussian"):
        assert sum(beats(chosen, baseline, m) for m in ranked) > len(ranked) / 2, baseline
    for other in ("gradcam", "gradcam++", "cam"):
        if other != chosen:
            assert sum(beats(other, chosen, m) for m in ranked) <= len(ranked) / 2 + 1, other
    assert rows[chosen]["randomisation"] < 0.5
