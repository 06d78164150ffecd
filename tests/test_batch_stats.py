"""A batch's statistics and preview, gathered from its chunks as they pass (iotgen.runs.batch_stats): the
same numbers as computed over the whole batch at once, whatever the chunk size or worker count."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from iotgen import generate_table
from iotgen.runs.batch import gather_stats, write_files
from iotgen.runs.batch_stats import BatchStats, bucket_us, sample_every
from iotgen.settings.config import Config

ANCHOR = "2026-06-01T00:00:00Z"


def config(tmp_path, **changes) -> Config:
    values = dict(num_events=20_000, random_seed=5, anchor_time=ANCHOR, output_dir=str(tmp_path),
                  chunk_size=3_000, preview_events=900)
    values.update(changes)
    return Config(**values)


@pytest.mark.parametrize("workers, chunk_size", [(1, 3_000), (2, 7_777), (1, 20_000)])
def test_stats_from_the_written_chunks_equal_the_whole_batch_at_once(tmp_path, workers, chunk_size):
    cfg = config(tmp_path, workers=workers, chunk_size=chunk_size)
    stats = BatchStats(cfg.num_events, cfg.preview_events)
    write_files(cfg, stats=stats)
    whole = generate_table(cfg).to_pandas()
    assert stats.count == len(whole) == 20_000
    assert pd.Timestamp(stats.timestamp_min_us, unit="us", tz="UTC") == whole["timestamp"].min()
    assert pd.Timestamp(stats.timestamp_max_us, unit="us", tz="UTC") == whole["timestamp"].max()
    assert stats.device_types == whole["device_type"].value_counts().to_dict()
    assert stats.updated_after_created and stats.calibrated_before
    times, means = stats.mean_temperature()
    hourly = whole.set_index("timestamp")["temperature"].resample("1h").mean().dropna()
    assert list(pd.to_datetime(times, unit="us", utc=True)) == list(hourly.index)
    np.testing.assert_allclose(means, hourly.values, rtol=1e-9)
    # the preview: every k-th event of the whole run, so at most PREVIEW_EVENTS rows spread over it
    every = sample_every(20_000, 900)
    assert stats.sampled and every == 23
    expected = whole.iloc[::every].reset_index(drop=True)
    assert len(expected) <= 900
    pd.testing.assert_frame_equal(stats.preview().to_pandas(), expected)


def test_stats_without_writing_equal_those_of_a_written_run(tmp_path):
    cfg = config(tmp_path)
    written = BatchStats(cfg.num_events, cfg.preview_events)
    write_files(cfg, stats=written)
    gathered = gather_stats(cfg)
    assert (gathered.count, gathered.device_types, gathered.temperature_by_bucket) == (
        written.count, written.device_types, written.temperature_by_bucket)
    assert gathered.preview().equals(written.preview())
    assert list(tmp_path.iterdir()) and len(list(tmp_path.iterdir())) == 1  # gathering wrote nothing more


def test_a_small_run_previews_every_event_and_counts_keys_without_json_loads_per_row(tmp_path):
    cfg = config(tmp_path, num_events=700, preview_events=1000)
    stats = gather_stats(cfg)
    assert not stats.sampled and stats.preview().num_rows == 700
    expected = [len(json.loads(text)) for text in stats.preview().column("json_column").to_pylist()]
    assert stats.key_counts().tolist() == expected
    assert min(expected) >= cfg.min_keys and max(expected) <= cfg.max_keys


def test_malformed_json_counts_as_minus_one_and_nulls_do_not_break_the_stats(tmp_path):
    from iotgen.spec.spec_file import generator_spec  # noqa: F401 - the spec path the CLI uses

    spec = tmp_path / "spec.yaml"
    spec.write_text("profile: fleet\nfleet: {device_count: 20}\n"
                    "scenarios: {malformed_json: {rate: 0.2}, nulls: {temperature: 0.3, device_type: 0.1}}\n")
    stats = gather_stats(config(tmp_path, num_events=3_000, preview_events=3_000, spec_file=str(spec)))
    counts = stats.key_counts()
    assert (counts == -1).sum() > 300 and (counts > 0).sum() > 1_500
    assert stats.count == 3_000 and sum(stats.device_types.values()) < 3_000  # null device types not counted
    assert all(np.isfinite(stats.mean_temperature()[1]))


def test_time_buckets_stay_few_over_long_windows():
    assert bucket_us(7 * 24 * 3_600_000) == 3_600_000_000
    assert 876_000 * 3_600_000 / (bucket_us(876_000 * 3_600_000) / 1000) <= 1_000
