from __future__ import annotations

import pickle

import numpy as np
import pytest

from eddy.operators.bandits import FeatureSpec, Featurizer


def _spec(**kw: object) -> FeatureSpec:
    base: dict = dict(
        numeric=("floor_price",),
        categorical=(("placement", 4), ("device", 3)),
        extra_dims=2,
    )
    base.update(kw)
    return FeatureSpec(**base)


def test_layout_one_hot_first_seen_vocab_and_other_slot() -> None:
    fz = Featurizer(_spec())
    assert fz.n_features == 1 + 1 + 4 + 3 + 2
    X = fz.transform(
        {"floor_price": [1.0, 2.0, 3.0], "placement": ["b", "a", "b"], "device": ["x", "y", "z"]},
        np.array([[1.0, 2.0], [3.0, np.nan], [5.0, 6.0]]),
    )
    np.testing.assert_array_equal(X[:, 0], 1.0)
    np.testing.assert_array_equal(X[:, 1], [1.0, 2.0, 3.0])  # no stats yet: identity scaling
    np.testing.assert_array_equal(X[:, 2:6], [[1, 0, 0, 0], [0, 1, 0, 0], [1, 0, 0, 0]])
    # device has 3 slots: 2 learned values, then "other"
    np.testing.assert_array_equal(X[:, 6:9], [[1, 0, 0], [0, 1, 0], [0, 0, 1]])
    np.testing.assert_array_equal(X[:, 9:], [[1, 2], [3, 0], [5, 6]])


def test_running_scaling_uses_stats_before_the_batch() -> None:
    fz = Featurizer(FeatureSpec(numeric=("a", "b"), intercept=False))
    rng = np.random.default_rng(0)
    batches = [rng.normal(5.0, 2.0, size=(100, 2)) for _ in range(5)]
    for i, b in enumerate(batches):
        X = fz.transform({"a": b[:, 0], "b": b[:, 1]})
        if i:
            seen = np.concatenate(batches[:i])
            expect = np.clip((b - seen.mean(0)) / seen.std(0), -5, 5)
            np.testing.assert_allclose(X, expect, rtol=1e-10)


def test_bad_values_never_crash_and_become_zero() -> None:
    fz = Featurizer(_spec(extra_dims=0))
    X = fz.transform(
        {
            "floor_price": [None, "abc", np.inf, 1e300],
            "placement": [None, 1, 2, 3],
            "device": ["a", "a", "a", "a"],
        }
    )
    assert np.isfinite(X).all()
    np.testing.assert_array_equal(X[:3, 1], 0.0)
    assert X[3, 1] == 0.0  # absurd -> missing
    assert X[0, 2 + 3] == 1.0  # None -> "other" slot


def test_hashed_slots_are_stable_and_version_tracks_the_spec() -> None:
    a = Featurizer(_spec(hashed=True, extra_dims=0))
    b = Featurizer(_spec(hashed=True, extra_dims=0))
    cols = {"floor_price": [0.0] * 3, "placement": ["p1", "p2", "p1"], "device": ["m", "d", "t"]}
    np.testing.assert_array_equal(a.transform(cols), b.transform(cols))
    assert a.version == b.version and a.version.startswith("fs1-")
    assert Featurizer(_spec(hashed=False, extra_dims=0)).version != a.version


def test_hashed_slots_do_not_depend_on_what_came_before() -> None:
    warm = Featurizer(_spec(hashed=True, extra_dims=0))
    mixed = ["1", 1, 1.0, True, None, "None", "p", "p"]
    cols = {"floor_price": [0.0] * 8, "placement": mixed, "device": mixed[::-1]}
    warm.transform(cols)  # fills the slot cache
    again = warm.transform(cols)
    np.testing.assert_array_equal(
        again, Featurizer(_spec(hashed=True, extra_dims=0)).transform(cols)
    )
    placement = again[:, 2:6].argmax(axis=1)
    assert placement[4] == 3  # None -> the last ("other") slot


def test_fixed_vocab_and_fixed_scaling() -> None:
    fz = Featurizer(
        _spec(
            extra_dims=0,
            scaling="fixed",
            numeric_stats=((10.0, 2.0),),
            vocab=(("device", ("ios", "android")),),
        )
    )
    X = fz.transform({"floor_price": [12.0], "placement": ["a"], "device": ["web"]})
    assert X[0, 1] == 1.0
    np.testing.assert_array_equal(X[0, 6:9], [0, 0, 1])
    X = fz.transform({"floor_price": [8.0], "placement": ["a"], "device": ["android"]})
    assert X[0, 1] == -1.0
    np.testing.assert_array_equal(X[0, 6:9], [0, 1, 0])


def test_snapshot_restore_continues_identically() -> None:
    fz = Featurizer(_spec())
    rng = np.random.default_rng(1)

    def batch() -> tuple[dict, np.ndarray]:
        return (
            {
                "floor_price": rng.exponential(size=50),
                "placement": rng.choice(list("abcdef"), 50),
                "device": rng.choice(list("xyz"), 50),
            },
            rng.normal(size=(50, 2)),
        )

    fz.transform(*batch())
    clone = Featurizer.restore(pickle.loads(pickle.dumps(fz.snapshot())))
    for _ in range(3):
        cols, extra = batch()
        np.testing.assert_array_equal(fz.transform(cols, extra), clone.transform(cols, extra))


def test_spec_validation_names_the_field() -> None:
    with pytest.raises(ValueError, match="categorical"):
        FeatureSpec(categorical=(("a", 1),))
    with pytest.raises(ValueError, match="scaling"):
        FeatureSpec(scaling="minmax")
    with pytest.raises(ValueError, match="numeric_stats"):
        FeatureSpec(numeric=("a",), scaling="fixed")
    with pytest.raises(ValueError, match="vocab"):
        FeatureSpec(categorical=(("a", 2),), vocab=(("a", ("x", "y")),))
    fz = Featurizer(_spec())
    with pytest.raises(ValueError, match="placement"):
        fz.transform({"floor_price": [1.0]}, np.zeros((1, 2)))


def test_a_numeric_scalar_stands_for_a_column_and_inputs_are_not_changed() -> None:
    cols = {"floor_price": np.array([1.0, 1e300, 3.0]), "placement": ["a", "b", "a"]}
    cols["device"] = np.array(["x", "y", "x"], dtype=object)
    full = Featurizer(_spec(extra_dims=0)).transform({**cols, "floor_price": np.full(3, 2.5)})
    scalar = Featurizer(_spec(extra_dims=0)).transform({**cols, "floor_price": 2.5})
    np.testing.assert_array_equal(full, scalar)
    bad = Featurizer(_spec(extra_dims=0)).transform({**cols, "floor_price": "abc"})
    np.testing.assert_array_equal(bad[:, 1], 0.0)  # unparsable -> missing -> 0
    before = cols["floor_price"].copy()
    Featurizer(_spec(extra_dims=0)).transform(cols)
    np.testing.assert_array_equal(cols["floor_price"], before)  # 1e300 -> NaN inside only
