"""The small functions results rest on: whether a stored unit is reusable (``same_key``), the mean over
targets (``average_summaries``), strict JSON (``json_safe``) and pooling corpora (``Corpus.merged``)."""

from __future__ import annotations

import json
import math

import pytest

from rwku.corpus.build import Corpus
from rwku.execution.key import differences, same_key
from rwku.io import json_safe, read_json, write_json_atomic
from rwku.results import average_summaries

# ------------------------------------------------------------------ same_key (whether a stored unit is reusable)

KEY = {"model": "m", "sets": ("forget", "neighbor"), "limit": None, "train": {"lr": 1e-3, "layers": (4, 8)},
       "protocol": ["single-bos"]}


def stored(key):
    """A key as it comes back from disk: written strict JSON, read again."""
    return json.loads(json.dumps(json_safe(key), allow_nan=False))


def test_same_key_compares_as_json():
    key = stored(KEY)
    assert key["sets"] == ["forget", "neighbor"]  # the tuple came back a list
    assert same_key(key, KEY)
    assert same_key(key, {**KEY, "sets": ["forget", "neighbor"], "train": {"lr": 1e-3, "layers": [4, 8]}})
    assert same_key({"k": [1, [2, 3]]}, {"k": (1, (2, 3))})
    assert same_key({"1": "a"}, {1: "a"})  # JSON keys are strings


@pytest.mark.parametrize("changed", [
    {"model": "other"},
    {"limit": 5},
    {"sets": ("forget",)},
    {"sets": ("neighbor", "forget")},  # order counts
    {"train": {"lr": 1e-4, "layers": (4, 8)}},  # a nested value
    {"train": {"lr": 1e-3, "layers": (4, 9)}},
    {"extra": True},  # a key the stored key lacks
])
def test_a_changed_value_is_another_key(changed):
    assert not same_key(stored(KEY), {**KEY, **changed})
    assert differences(stored(KEY), {**KEY, **changed})  # and --dry-run can say what changed


def test_a_missing_key_is_never_the_same():
    assert same_key(None, KEY) is False
    assert same_key(None, {}) is False
    assert not same_key({"model": "m"}, KEY)
    removed = dict(KEY)
    del removed["limit"]
    assert not same_key(stored(KEY), removed)
    assert differences(None, KEY) == "stored before keys were declared"


def test_nan_and_inf_in_a_key_become_null_and_still_compare(tmp_path):
    key = {"lr": float("nan"), "clip": float("inf"), "floor": float("-inf"), "grid": (1.0, float("nan")), "ok": 0.5}
    path = tmp_path / "summary.json"
    write_json_atomic(path, {"key": key})  # strict JSON: NaN and inf cannot be written as such
    summary = read_json(path)
    assert summary["key"] == {"lr": None, "clip": None, "floor": None, "grid": [1.0, None], "ok": 0.5}
    assert same_key(summary["key"], key)
    assert not same_key(summary["key"], {**key, "lr": 1e-3})  # null is not a number
    assert not same_key(summary["key"], {**key, "ok": float("nan")})  # nor is a number null


def test_a_settings_field_added_later_keeps_stored_units_when_at_its_default():
    old = stored({"version": 1, "method": {"name": "ga", "train": {"lr": 1e-3}}})
    defaults = {"train": {"lr": 1e-5, "label_smoothing": 0.0}}
    new = {"version": 1, "method": {"name": "ga", "train": {"lr": 1e-3, "label_smoothing": 0.0}}}
    assert same_key(old, new, defaults)  # the new field at its default: the old unit is still valid
    assert not same_key(old, new)  # (without the declared defaults it would look stale)
    changed = {"version": 1, "method": {"name": "ga", "train": {"lr": 1e-3, "label_smoothing": 0.1}}}
    assert not same_key(old, changed, defaults)
    assert "label_smoothing" in differences(old, changed, defaults)
    stored_default = stored({"version": 1, "method": {"name": "ga", "train": {"lr": 1e-5}}})
    asked = {"version": 1, "method": {"name": "ga", "train": {"lr": 2e-5}}}
    assert not same_key(stored_default, asked, defaults)  # a stored value is always compared, defaults or not


# ------------------------------------------------------------------ average_summaries


def target_summary(forget_all, fb, gen, n_forget, seconds, neighbor=None, mia=None, extra=None):
    summary = {"target": "t", "forget": {"All": forget_all, "FB": fb}, "utility": {"Gen": gen},
               "n_items": {"forget": n_forget}, "seconds": {"forget": seconds}, **(extra or {})}
    if neighbor is not None:
        summary["neighbor"] = {"All": neighbor}
        summary["n_items"]["neighbor"] = 4
    if mia is not None:
        summary["mia"] = mia
    return summary


def test_average_is_the_mean_per_value_and_counters_are_summed():
    a = target_summary(10.0, 20.0, 60.0, 3, 1.5, neighbor=50.0, mia={"FM": 0.2, "by": {"x": 1.0}})
    b = target_summary(30.0, 40.0, 62.0, 5, 2.5)  # no neighbor, no MIA: skipped for those values
    c = target_summary(20.0, 30.0, 64.0, 4, 1.0, neighbor=70.0)
    averaged = average_summaries([a, b, c])
    assert averaged["forget"] == {"All": pytest.approx(20.0), "FB": pytest.approx(30.0)}
    assert averaged["utility"] == {"Gen": pytest.approx(62.0)}  # nested values keep their nesting
    assert averaged["neighbor"] == {"All": pytest.approx(60.0)}  # (50 + 70) / 2, not / 3
    assert averaged["mia"] == {"FM": pytest.approx(0.2), "by": {"x": pytest.approx(1.0)}}  # only a has MIA
    assert averaged["n_items"] == {"forget": 12, "neighbor": 8}
    assert averaged["seconds"] == {"forget": pytest.approx(5.0)}
    assert averaged["n_targets"] == 3


def test_average_skips_a_missing_nested_value_and_ignores_what_is_not_a_score():
    a = {"forget": {"All": 10.0, "AA_by_type": {"role play": 4.0}}, "utility": {"Gen": 50.0, "Flu": 3.0},
         "n_items": {"forget": 2}, "seconds": {}, "model": "m", "config": {"lr": 1.0}}
    b = {"forget": {"All": 20.0, "AA_by_type": {}, "note": "text", "flag": True}, "utility": {"Gen": 70.0},
         "n_items": {"forget": 2}, "model": "m"}  # no Flu, no seconds at all
    averaged = average_summaries([a, b])
    assert averaged["forget"] == {"All": pytest.approx(15.0), "AA_by_type": {"role play": pytest.approx(4.0)}}
    assert averaged["utility"] == {"Gen": pytest.approx(60.0), "Flu": pytest.approx(3.0)}
    assert "model" not in averaged and "config" not in averaged  # only score sections are averaged
    assert averaged["n_items"] == {"forget": 4} and averaged["seconds"] == {}
    assert averaged["n_targets"] == 2


def test_average_of_one_target_is_itself_and_of_none_is_empty():
    a = target_summary(10.0, 20.0, 60.0, 3, 1.5, neighbor=50.0)
    averaged = average_summaries([a])
    assert averaged["forget"] == a["forget"] and averaged["utility"] == a["utility"] and averaged["neighbor"] == a["neighbor"]
    assert averaged["n_items"] == a["n_items"] and averaged["n_targets"] == 1
    assert average_summaries([]) == {"n_items": {}, "seconds": {}, "n_targets": 0}
    assert average_summaries(iter([a, a]))["n_targets"] == 2  # any iterable, read once


# ------------------------------------------------------------------ json_safe


def test_json_safe_nulls_nan_and_inf_at_any_depth():
    nan, inf = float("nan"), float("inf")
    value = {"a": nan, "b": [1.0, inf, {"c": -inf, "d": (nan, 2)}], "e": (inf, [nan]), "f": {"g": {"h": nan}}}
    assert json_safe(value) == {"a": None, "b": [1.0, None, {"c": None, "d": [None, 2]}], "e": [None, [None]],
                                "f": {"g": {"h": None}}}
    assert json.dumps(json_safe(value), allow_nan=False)  # strict JSON now


def test_json_safe_keeps_other_values_and_stringifies_keys():
    value = {1: 0.5, (2, 3): "x", None: True, "n": None, "i": 7, "s": "nan", "z": 0.0, "neg": -1e308}
    safe = json_safe(value)
    assert safe == {"1": 0.5, "(2, 3)": "x", "None": True, "n": None, "i": 7, "s": "nan", "z": 0.0, "neg": -1e308}
    assert all(isinstance(k, str) for k in safe)
    assert isinstance(json_safe((1, 2)), list) and json_safe(math.pi) == math.pi and json_safe("inf") == "inf"
    assert json_safe(nested := {"k": [1]}) == nested and json_safe(nested) is not nested  # a copy, not the input
    assert json_safe(float("nan")) is None


# ------------------------------------------------------------------ Corpus.merged


def corpus(tag, n, source="generated"):
    return Corpus(targets=[tag], forget=[f"{tag} fact {i}" for i in range(n)],
                  counterfactual=[f"{tag} fiction {i}" for i in range(n)], pair_prompts=[f"{tag} prompt {i}" for i in range(n)],
                  questions=[f"{tag} question {i}" for i in range(n + 1)], refusals=[f"{tag} refusal {i}" for i in range(n + 1)],
                  passage=[f"{tag} passage {i}" for i in range(n + 2)], source=source)


def test_merged_concatenates_every_field_in_order():
    a, b = corpus("A", 2), corpus("B", 3)
    merged = a.merged(b)
    for name in ("targets", "forget", "counterfactual", "pair_prompts", "questions", "refusals", "passage"):
        assert getattr(merged, name) == getattr(a, name) + getattr(b, name), name
    assert merged.source == "generated"
    assert a.forget == ["A fact 0", "A fact 1"] and b.targets == ["B"]  # the inputs are left alone
    three = merged.merged(corpus("C", 1))
    assert three.targets == ["A", "B", "C"] and three.passage[-3:] == ["C passage 0", "C passage 1", "C passage 2"]


def test_merged_source_is_kept_when_equal_and_mixed_otherwise():
    assert corpus("A", 1, "official").merged(corpus("B", 1, "official")).source == "official"
    assert corpus("A", 1, "official").merged(corpus("B", 1)).source == "mixed"
    assert corpus("A", 1).merged(corpus("B", 1, "official")).source == "mixed"
    assert corpus("A", 1, "official").merged(corpus("B", 1)).merged(corpus("C", 1)).source == "mixed"


def test_merged_pairs_align_across_both_corpora():
    a, b = corpus("A", 2), corpus("B", 3)
    pairs = a.merged(b).pairs()
    assert pairs == a.pairs() + b.pairs()
    assert pairs == [(f"{t} prompt {i}", f"{t} fiction {i}", f"{t} fact {i}") for t, n in (("A", 2), ("B", 3)) for i in range(n)]
    merged = a.merged(b)  # refusals still answer their own questions
    assert all(q.split()[0] == r.split()[0] and q[-1] == r[-1] for q, r in zip(merged.questions, merged.refusals))


# ------------------------------------------------------------------ the RWKU score and bootstrap intervals


def unit(forget, neighbor, utility=(50.0, 40.0, 30.0, 20.0, 600.0)):
    return {"forget": {"All": forget}, "neighbor": {"All": neighbor},
            "utility": dict(zip(("Gen", "Rea", "Tru", "Fac", "Flu"), utility))}


def test_rwku_score_on_hand_made_numbers():
    from rwku.evaluation.table1 import mean_rwku_score, rwku_score

    # efficacy (80 − 20)/80 = 0.75, locality 45/90 = 0.5, utility mean(1, 1, 1, 1, 0.5) = 0.9
    score = rwku_score(unit(80.0, 90.0), unit(20.0, 45.0, (60.0, 40.0, 30.0, 20.0, 300.0)))
    assert score["efficacy"] == 0.75 and score["locality"] == 0.5 and score["utility"] == pytest.approx(0.9)
    assert score["score"] == pytest.approx(100 * 3 / (1 / 0.75 + 1 / 0.5 + 1 / 0.9))  # Gen 60/50 was capped at 1
    assert rwku_score(unit(80.0, 90.0), unit(90.0, 90.0))["score"] == 0.0  # forgot nothing: efficacy 0
    assert rwku_score(unit(4.9, 90.0), unit(0.0, 90.0)) is None  # nothing to forget: no efficacy
    assert rwku_score(unit(80.0, 90.0), {"forget": {"All": 10.0}}) is None  # a missing set
    mean = mean_rwku_score([(unit(80.0, 90.0), unit(40.0, 90.0)), (unit(3.0, 90.0), unit(0.0, 90.0))])
    assert mean["n_targets"] == 1 and mean["left_out"] == 1
    assert mean["score"] == pytest.approx(100 * 3 / (2 + 1 + 1))


def test_bootstrap_interval_is_seeded_and_brackets_the_mean():
    from rwku.report.table import bootstrap_interval

    values = [10.0, 12.0, 30.0, 31.0, 50.0, 8.0]
    low, high = bootstrap_interval(values)
    assert low < sum(values) / len(values) < high and bootstrap_interval(values) == (low, high)
    assert bootstrap_interval([5.0, 5.0, 5.0]) == (5.0, 5.0) and bootstrap_interval([1.0]) is None
    assert bootstrap_interval([10.0, 20.0]) == (10.0, 20.0)  # resampled means: 10, 15 or 20
