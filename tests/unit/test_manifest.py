"""manifest.json: settings validation, atomic writes, refusal of unknown versions."""

from __future__ import annotations

import json
import os

import pytest

from lookalike import __version__
from lookalike.errors import ConfigError, IndexCorruptError
from lookalike.index.manifest import (
    FORMAT_VERSION,
    MANIFEST_NAME,
    IndexSettings,
    Manifest,
    WhiteningState,
    read_manifest,
    validate_settings,
    write_manifest,
)


def _manifest(**settings) -> Manifest:
    return Manifest(lookalike_version=__version__, settings=IndexSettings(**settings))


def test_round_trip(tmp_path):
    m = _manifest(descriptor="mac", max_side=224, scales=(1, 0.707), index_key="Flat")
    m.dim = 1280
    m.whitening = WhiteningState(kind="pcaw", dim=256, trained_on=2000)
    m.index_key, m.index_generation = "Flat", 7
    write_manifest(tmp_path, m)
    back = read_manifest(tmp_path)
    assert back == m
    assert back.settings.scales == (1.0, 0.707)
    assert back.search_dim == 256
    raw = json.loads((tmp_path / MANIFEST_NAME).read_text())
    assert raw["format_version"] == FORMAT_VERSION
    assert raw["settings"]["descriptor"] == "mac"


def test_search_dim_is_raw_dim_without_whitening():
    m = _manifest()
    assert m.search_dim is None
    m.dim = 1280
    assert m.search_dim == 1280


def test_write_is_atomic_and_leaves_no_temp_files(tmp_path, monkeypatch):
    write_manifest(tmp_path, _manifest(max_side=300))
    before = (tmp_path / MANIFEST_NAME).read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        write_manifest(tmp_path, _manifest(max_side=500))
    monkeypatch.undo()
    assert (tmp_path / MANIFEST_NAME).read_bytes() == before  # the old one, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == [MANIFEST_NAME]


@pytest.mark.parametrize(
    "content, match",
    [
        ("{not json", "cannot read the manifest"),
        ('{"format_version": 99}', "format version 99"),
        ("[]", "format version None"),
        (
            json.dumps({"format_version": FORMAT_VERSION, "lookalike_version": "x"}),
            "invalid manifest",
        ),
        (
            json.dumps(
                {
                    "format_version": FORMAT_VERSION,
                    "lookalike_version": "x",
                    "settings": {"max_side": 1},
                }
            ),
            "invalid manifest",
        ),
    ],
)
def test_unreadable_manifest_is_a_clear_error(tmp_path, content, match):
    (tmp_path / MANIFEST_NAME).write_text(content)
    with pytest.raises(IndexCorruptError, match=match):
        read_manifest(tmp_path)


def test_validate_settings_names_the_field():
    assert validate_settings(max_side=224, model=None).max_side == 224
    with pytest.raises(ConfigError, match="max_side"):
        validate_settings(max_side=5)
    with pytest.raises(ConfigError, match="scales"):
        validate_settings(scales=(0.0,))
    with pytest.raises(ConfigError, match="colour"):
        validate_settings(colour="red")


def test_dba_setting_is_validated_and_canonical(tmp_path):
    assert IndexSettings().dba is None
    assert validate_settings(dba="none").dba is None
    assert validate_settings(dba="alpha:n=2,alpha=2").dba == "alpha-qe:alpha=2,n=2"
    assert validate_settings(dba="aqe:n=1").dba == "aqe:n=1"
    for bad in ("qe", "aqe:n=0", "alpha-qe:alpha=-1"):
        with pytest.raises(ConfigError, match="dba"):
            validate_settings(dba=bad)
    m = _manifest(dba="alpha-qe:n=3,alpha=3")
    write_manifest(tmp_path, m)
    assert read_manifest(tmp_path).settings.dba == "alpha-qe:alpha=3,n=3"
    # a manifest written before the setting existed reads as DBA off
    raw = json.loads((tmp_path / MANIFEST_NAME).read_text())
    del raw["settings"]["dba"]
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(raw))
    assert read_manifest(tmp_path).settings.dba is None


def test_settings_are_frozen():
    s = IndexSettings()
    with pytest.raises(Exception, match="frozen"):
        s.max_side = 100
    assert s.extraction() == {
        "model": "lite0",
        "descriptor": "gem:p=3",
        "max_side": 480,
        "scales": [1.0],
        "precision": "fp32",
    }


def test_precision_is_checked_and_old_manifests_read_as_fp32(tmp_path):
    with pytest.raises(ConfigError, match="precision"):
        validate_settings(precision="int4")
    assert validate_settings(precision="int8").precision == "int8"
    write_manifest(tmp_path, Manifest(lookalike_version="0", settings=IndexSettings()))
    raw = json.loads((tmp_path / "manifest.json").read_text())
    del raw["settings"]["precision"]  # as written before the setting existed
    (tmp_path / "manifest.json").write_text(json.dumps(raw))
    assert read_manifest(tmp_path).settings.precision == "fp32"


def test_a_trained_model_needs_its_folder_and_hash_together():
    from lookalike.errors import ConfigError
    from lookalike.index.manifest import validate_settings

    s = validate_settings(model_dir="/m", model_hash="abc")
    assert s.extraction()["model_dir"] == "/m" and s.extraction()["model_hash"] == "abc"
    with pytest.raises(ConfigError, match="go together"):
        validate_settings(model_dir="/m")
    assert "model_dir" not in IndexSettings().extraction()
