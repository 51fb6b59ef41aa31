"""Learning from the user's data on the shipped photos: fine-tuning (train), the model folder
and its use by index / search / eval, supervised whitening, and class heads (train-classes).

Training budgets are tiny (a few epochs on a dozen small images): these tests check that the
machinery is right, not how much it helps (BENCHMARKS.md measures that).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lookalike.engine import Index
from lookalike.errors import ConfigError, IndexMismatchError
from lookalike.evaluation.synthetic import make_benchmark
from lookalike.index.manifest import IndexSettings
from lookalike.training.model_dir import load_trained_model, resolve_model

GROUP_NAMES = ("chelsea", "coffee", "rocket", "astronaut", "motorcycle_left")
EDITS = ("crop", "colour", "flip")
SIDE = 160
TINY = dict(max_epochs=3, views=2, side=128, lr=1e-3, negatives=2, tuples_per_step=4)


@pytest.fixture(scope="module")
def groups_dir(tmp_path_factory, photos) -> Path:
    root = tmp_path_factory.mktemp("train") / "groups"
    make_benchmark({n: photos[n] for n in GROUP_NAMES}, root, edits=EDITS, max_side=SIDE)
    return root


@pytest.fixture(scope="module")
def trained(tmp_path_factory, groups_dir):
    from lookalike.training import train

    out = tmp_path_factory.mktemp("model") / "m"
    report = train(groups_dir, out, minutes=2.0, max_side=SIDE, **TINY)
    return out, report


def _run_cli(*args: str, check_rc: int = 0) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "lookalike", *args],
        capture_output=True,
        text=True,
        env={**os.environ},
        timeout=600,
    )
    assert proc.returncode == check_rc, proc.stderr
    return proc


# -- fine-tuning ---------------------------------------------------------------------------


def test_finetune_trains_only_the_last_blocks_and_lowers_the_loss(groups_dir):
    from lookalike.backbone.efficientnet import load_model
    from lookalike.training.data import load_groups
    from lookalike.training.finetune import FinetuneConfig, finetune

    data = load_groups(groups_dir, max_side=SIDE)
    result = finetune(data, FinetuneConfig(minutes=2.0, **{**TINY, "max_epochs": 4}))
    base = load_model("lite0").state_dict()
    tuned = result.model.state_dict()
    changed = {
        k.split(".")[0] + ("." + k.split(".")[1] if k.startswith("_blocks") else "")
        for k in base
        if not np.allclose(base[k].numpy(), tuned[k].numpy())
    }
    n = len(result.model._blocks)
    assert changed and changed <= {f"_blocks.{n - 2}", f"_blocks.{n - 1}", "_conv_head", "_bn1"}
    assert result.epochs == 4 and len(result.losses) == 4
    assert result.losses[-1] < result.losses[0]
    assert result.p != 3.0  # GeM p is learned


def test_finetune_honours_the_time_budget(groups_dir):
    from lookalike.training.data import load_groups
    from lookalike.training.finetune import FinetuneConfig, finetune

    data = load_groups(groups_dir, max_side=SIDE)
    # The budget runs out during the frozen layers' pass: no model is made from no training.
    with pytest.raises(ConfigError, match="time budget"):
        finetune(data, FinetuneConfig(minutes=0.001, views=1, side=96))


def test_train_writes_a_model_folder_that_index_and_search_use(trained, groups_dir, tmp_path):
    out, report = trained
    model = load_trained_model(out)
    assert model.base == "lite0" and model.hash == report.hash
    assert model.descriptor.startswith("gem:p=") and model.descriptor != "gem:p=3"
    assert (out / "model.onnx").is_file()
    info = json.loads((out / "model.json").read_text())
    assert info["training"]["groups"] == len(GROUP_NAMES)
    assert report.images == len(GROUP_NAMES) * (len(EDITS) + 1)

    settings = IndexSettings(max_side=SIDE, whiten_dim=0, **resolve_model(str(out)))
    with Index.create(tmp_path / "idx", settings) as idx:
        idx.sync([groups_dir])
        assert idx.manifest.settings.model_dir == str(out)
        assert idx.manifest.settings.model_hash == model.hash
        query = groups_dir / "chelsea" / "original.jpg"
        hits = idx.search(query, k=3)
        assert [Path(h.path).parent.name for h in hits] == ["chelsea"] * 3
        # the stored descriptors are the fine-tuned model's, not the base model's
        tuned = idx.describe(query)
    with Index.create(tmp_path / "base", IndexSettings(max_side=SIDE, whiten_dim=0)) as base:
        plain = base.describe(query)
    assert float(tuned @ plain) < 0.9999


def test_an_index_refuses_another_model_and_a_changed_model(trained, groups_dir, tmp_path):
    out, _ = trained
    idx_dir = tmp_path / "idx"
    _run_cli("index", str(groups_dir), "-i", str(idx_dir), "--max-side", str(SIDE))
    proc = _run_cli("index", str(groups_dir), "-i", str(idx_dir), "--model", str(out), check_rc=2)
    assert "model_hash" in proc.stderr or "model_dir" in proc.stderr

    copy = tmp_path / "copy"
    copy.mkdir()
    for f in out.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    idx2 = tmp_path / "idx2"
    _run_cli(
        "index",
        str(groups_dir),
        "-i",
        str(idx2),
        "--model",
        str(copy),
        "--max-side",
        str(SIDE),
        "--json",
    )
    query = str(groups_dir / "coffee" / "original.jpg")
    hits = json.loads(_run_cli("search", query, "-i", str(idx2), "-k", "2", "--json").stdout)
    assert len(hits["hits"]) == 2
    with open(copy / "model.onnx", "ab") as fh:  # the model changes under the index
        fh.write(b"\0")
    proc = _run_cli("search", query, "-i", str(idx2), "--json", check_rc=2)
    assert "not the one the index was built with" in proc.stderr


def test_search_with_a_trained_model_does_not_import_torch(trained, groups_dir, tmp_path):
    out, _ = trained
    settings = IndexSettings(max_side=SIDE, whiten_dim=0, **resolve_model(str(out)))
    with Index.create(tmp_path / "idx", settings) as idx:
        idx.sync([groups_dir])
    code = (
        "import sys; from lookalike.engine import Index; "
        f"idx = Index.open({str(tmp_path / 'idx')!r}); "
        f"hits = idx.search({str(groups_dir / 'rocket' / 'original.jpg')!r}, k=2); "
        "assert hits, 'no hits'; assert 'torch' not in sys.modules, 'torch was imported'"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_eval_with_a_trained_model(trained, groups_dir):
    out, _ = trained
    proc = _run_cli(
        "eval", "groups", str(groups_dir), "--model", str(out), "--max-side", str(SIDE), "--json"
    )
    summary = json.loads(proc.stdout)
    assert summary["settings"]["model_dir"] == str(out)
    assert summary["settings"]["descriptor"] == load_trained_model(out).descriptor
    assert 0.5 < summary["map"] <= 1.0


def test_model_option_errors():
    with pytest.raises(ConfigError, match="no such model"):
        resolve_model("/nonexistent/model")
    assert resolve_model("lite2") == {"model": "lite2"}


def test_train_refuses_bad_input(tmp_path, groups_dir):
    from lookalike.training import train

    (tmp_path / "only").mkdir()
    (tmp_path / "only" / "one").mkdir()
    with pytest.raises(ConfigError, match="at least 2 groups"):
        train(tmp_path / "only", tmp_path / "out", minutes=0.1)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(ConfigError, match="not an empty folder"):
        train(groups_dir, tmp_path / "full", minutes=0.1)
    with pytest.raises(ConfigError, match="either"):
        train(None, tmp_path / "out2", minutes=0.1)
    with pytest.raises(ConfigError, match="unknown loss"):
        train(groups_dir, tmp_path / "out3", minutes=0.1, loss="hinge")


def test_self_supervised_groups_are_photos_and_their_edits(tmp_path, photos):
    from lookalike.training.data import self_supervised_groups

    for name in ("chelsea", "coffee", "rocket"):
        photos[name].save(tmp_path / f"{name}.jpg")
    data = self_supervised_groups(tmp_path, copies=2, max_side=SIDE)
    assert len(data.names) == 3 and len(data) == 9
    assert sorted(data.labels) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    first = np.asarray(data.images[0], dtype=np.float32)
    for copy in data.images[1:3]:
        arr = np.asarray(copy, dtype=np.float32)
        assert arr.shape != first.shape or np.abs(arr - first).mean() > 1.0


def test_self_supervised_training_runs_from_the_cli(tmp_path, photos):
    src = tmp_path / "photos"
    src.mkdir()
    for name in ("chelsea", "coffee", "rocket", "camera"):
        photos[name].resize((128, 96)).save(src / f"{name}.jpg")
    out = tmp_path / "m"
    proc = _run_cli(
        "train",
        "--self-supervised",
        str(src),
        "--out",
        str(out),
        "--minutes",
        "0.3",
        "--max-side",
        "128",
        "--no-whitening",
        "--json",
    )
    report = json.loads(proc.stdout)
    assert report["groups"] == 4 and report["images"] == 16
    assert report["whitening"]["use"] is False
    assert load_trained_model(out).has_whitening is False


# -- class heads ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def labeled_dir(tmp_path_factory, photos) -> Path:
    from lookalike.edits import apply_edit

    root = tmp_path_factory.mktemp("labeled")
    classes = {"cat": "chelsea", "coffee-cup": "coffee", "rocket": "rocket"}
    for cls, name in classes.items():
        (root / cls).mkdir()
        image = photos[name].resize((SIDE, int(SIDE * 0.75)))
        image.save(root / cls / "a.jpg")
        for i, edit in enumerate(("crop", "colour", "jpeg")):
            apply_edit(edit, image, i).save(root / cls / f"{edit}.jpg")
    return root


def test_train_classes_attaches_classes_that_tag_text_and_classify_use(
    labeled_dir, groups_dir, tmp_path, photos
):
    idx_dir = tmp_path / "idx"
    _run_cli("index", str(groups_dir), "-i", str(idx_dir), "--max-side", str(SIDE))
    head_dir = tmp_path / "head"
    proc = _run_cli(
        "train-classes", str(labeled_dir), "--out", str(head_dir), "-i", str(idx_dir), "--json"
    )
    report = json.loads(proc.stdout)
    assert report["classes"] == ["cat", "coffee-cup", "rocket"]
    assert report["holdout_accuracy"] is not None and report["holdout_accuracy"] >= 2 / 3

    hits = json.loads(
        _run_cli("search", "-i", str(idx_dir), "--text", "cat", "-k", "4", "--json").stdout
    )["hits"]
    assert hits and {Path(h["path"]).parent.name for h in hits} == {"chelsea"}
    hits = json.loads(
        _run_cli("search", "-i", str(idx_dir), "--text", "Coffee Cup", "--json").stdout
    )["hits"]
    assert hits and all(Path(h["path"]).parent.name == "coffee" for h in hits)

    query = str(groups_dir / "astronaut" / "original.jpg")
    hits = json.loads(
        _run_cli("search", query, "-i", str(idx_dir), "--tag", "rocket", "--json").stdout
    )["hits"]
    assert hits and all(Path(h["path"]).parent.name == "rocket" for h in hits)

    probe = tmp_path / "probe.jpg"
    photos["chelsea"].resize((SIDE, 120)).rotate(8).save(probe)
    for option in (["--index", str(idx_dir)], ["--classes", str(head_dir)]):
        out = json.loads(_run_cli("classify", str(probe), *option, "--json").stdout)
        assert out["labels"][0]["name"] == "cat" and out["labels"][0]["member"]
    # open set: a photo of none of the classes is a member of none
    stranger = tmp_path / "stranger.jpg"
    photos["astronaut"].resize((SIDE, SIDE)).save(stranger)
    out = json.loads(
        _run_cli("classify", str(stranger), "--classes", str(head_dir), "--json").stdout
    )
    assert not any(label["member"] for label in out["labels"])


def test_a_head_only_attaches_to_an_index_with_its_settings(labeled_dir, groups_dir, tmp_path):
    from lookalike.training import train_classes
    from lookalike.training.heads import attach_head

    head = tmp_path / "head"
    train_classes(labeled_dir, head, max_side=224, views=1)
    with Index.create(tmp_path / "idx", IndexSettings(max_side=SIDE)) as idx:
        with pytest.raises(IndexMismatchError, match="trained with"):
            attach_head(idx, head)
