"""The fast paths behind the fixed columns: UUID text, sensor ids, grid draws, categorical and Poisson draws."""

from __future__ import annotations

import math
import re
import uuid

import numpy as np
import pytest

from iotgen.generation import generator
from iotgen.settings.catalogs import Categorical, Catalogs
from iotgen.generation.generator import GeneratorSpec, build_events

UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def test_uuid_text_is_version_4_and_matches_its_bytes():
    rng = np.random.default_rng(1)
    ids = generator._uuid4(rng, 50_000).to_pylist()
    assert len(set(ids)) == len(ids) and all(UUID4.match(i) for i in ids)
    assert all(str(uuid.UUID(i)) == i and uuid.UUID(i).version == 4 for i in ids[:1000])
    nibbles = np.array([int(c, 16) for i in ids[:5000] for c in i.replace("-", "")]).reshape(5000, 32)
    free = np.delete(nibbles, [12, 16], axis=1)  # all but the version digit and the variant digit
    assert abs(free.mean() - 7.5) < 0.05 and set(nibbles[:, 16]) == {8, 9, 10, 11}
    assert len(generator._uuid4(rng, 1)) == 1


@pytest.mark.parametrize("num_sensors", [1, 1000, 99_999, generator.SENSOR_TABLE_LIMIT + 1, 10**7])
def test_sensor_ids_table_and_computed_paths_agree(num_sensors):
    numbers = np.unique(np.concatenate([[1, num_sensors], np.random.default_rng(2).integers(1, num_sensors + 1, 500)]))
    width = max(5, len(str(num_sensors)))
    expected = [f"sensor-{k:0{width}d}" for k in numbers]
    assert generator._sensor_ids(numbers, num_sensors).to_pylist() == expected
    assert generator._fixed_width(generator._sensor_text(numbers, width)).to_pylist() == expected


@pytest.mark.parametrize("distribution, low, high, decimals, reference", [
    (("beta", 5.0, 1.5, 100.0), 0, 100, 1, lambda rng, n: 100 * rng.beta(5.0, 1.5, n)),
    (("normal", 22.0, 8.0), -40, 85, 2, lambda rng, n: rng.normal(22.0, 8.0, n)),
    (("normal", -70.0, 12.0), -120, -30, 0, lambda rng, n: rng.normal(-70.0, 12.0, n)),
])
def test_grid_draws_follow_the_rounded_distribution(distribution, low, high, decimals, reference):
    rng = np.random.default_rng(3)
    n = 200_000
    drawn = generator._grid_draw(rng, distribution, low, high, decimals, n)
    expected = np.round(np.clip(reference(rng, n), low, high), decimals)
    assert drawn.dtype == np.float64 and drawn.min() >= low and drawn.max() <= high
    assert np.array_equal(np.round(drawn, decimals), drawn)
    grid = np.linspace(low, high, 41)  # two-sample Kolmogorov-Smirnov distance on a grid of cut points
    distance = np.abs(np.searchsorted(np.sort(drawn), grid, "right") - np.searchsorted(np.sort(expected), grid,
                                                                                       "right")).max() / n
    assert distance < 1.95 * math.sqrt(2 / n) * 1.5
    assert abs(drawn.mean() - expected.mean()) < 4 * expected.std() / math.sqrt(n)


def test_categorical_and_fault_draws():
    rng = np.random.default_rng(4)
    cat = Categorical.parse({"a": 0.7, "b": 0.2, "c": 0.1, "never": 0}, "X")
    values = generator._draw(cat, rng, 100_000).to_pylist()
    shares = {v: values.count(v) / len(values) for v in "abc"}
    assert "never" not in values and abs(shares["a"] - 0.7) < 0.01 and abs(shares["c"] - 0.1) < 0.005
    faults = generator.draws.weighted(rng, generator._FAULT_CUTS, 200_000)
    counts = np.bincount(faults)
    for k in range(4):
        assert abs(counts[k] / 200_000 - math.exp(-0.4) * 0.4**k / math.factorial(k)) < 0.004
    assert faults.max() <= 50


def test_one_event_and_determinism():
    spec = GeneratorSpec(seed=1, catalogs=Catalogs.build(), window_start_ms=0, window_span_ms=10**6)
    one = build_events(spec, np.random.default_rng(5), 1)
    assert one.num_rows == 1 and UUID4.match(one.column("event_id")[0].as_py())
    again = build_events(spec, np.random.default_rng(5), 1)
    assert one.equals(again)
