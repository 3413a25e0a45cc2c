"""scripts/build_preferences.py: self-play rows (chosen = the reference, rejected = the model's own answer), rows
without a preference left out, the set written whole with its manifest, an existing set kept unless --force."""
from __future__ import annotations

import hashlib
import json

import pytest


@pytest.fixture(scope="module")
def build():
    from cli_helpers import load_script

    return load_script("build_preferences")


def test_rows_keep_a_preference_only(build):
    predictions = [
        {"id": "0", "input": "A dog runs.", "output": [{"translation_text": " Ein Hund rennt. "}],
         "reference": "Ein Hund läuft."},
        {"id": "1", "input": "A cat.", "output": [{"translation_text": "Eine Katze."}], "reference": "Eine Katze."},
        {"id": "2", "input": "A man.", "output": [{"translation_text": ""}], "reference": "Ein Mann."},
        {"id": "3", "input": "A bird.", "output": "Ein Vogel fliegt.", "reference": "Ein Vogel."},
    ]
    rows = build.preference_rows(predictions)
    assert rows == [{"id": "0", "prompt": "A dog runs.", "chosen": "Ein Hund läuft.", "rejected": "Ein Hund rennt."},
                    {"id": "3", "prompt": "A bird.", "chosen": "Ein Vogel.", "rejected": "Ein Vogel fliegt."}]


def test_the_set_is_written_whole_with_its_manifest(build, tmp_path):
    target = tmp_path / "preferences" / "set"
    splits = {"train": [{"id": "0", "prompt": "p", "chosen": "c", "rejected": "r"}], "validation": []}
    build.write_set(target, splits, {"files": {}})
    manifest = json.loads((target / "manifest.json").read_text())
    text = (target / "train.jsonl").read_text(encoding="utf-8")
    assert manifest["files"]["train.jsonl"] == {"rows": 1, "sha256": hashlib.sha256(text.encode()).hexdigest()}
    assert manifest["files"]["validation.jsonl"]["rows"] == 0
    build.write_set(target, {"train": [], "validation": []}, {"files": {}})  # a rebuild replaces it whole
    assert (target / "train.jsonl").read_text() == "" and sorted(p.name for p in target.parent.iterdir()) == ["set"]


def test_an_existing_set_is_kept_without_force(build, tmp_path, capsys):
    target = tmp_path / "set"
    target.mkdir()
    (target / "manifest.json").write_text(json.dumps({"built": "2026-12-07T00:00:00"}))
    assert build.main(["--out", str(target)]) == 0
    assert "exists (built 2026-12-07T00:00:00); --force rebuilds it" in capsys.readouterr().out


@pytest.mark.slow
def test_a_small_set_from_a_tiny_model_through_mode_infer(build, tiny_models, shared_data, tmp_path):
    target = tmp_path / "set"
    assert build.main(["--model-path", str(tiny_models["gpt2"]), "--mirror", str(shared_data), "--train", "6",
                       "--held-out", "3", "--max-new-tokens", "4", "--out", str(target)]) == 0
    rows = [json.loads(line) for line in (target / "train.jsonl").read_text(encoding="utf-8").splitlines()]
    english = (shared_data / "translation" / "multi30k" / "val.en").read_text(encoding="utf-8").splitlines()
    german = (shared_data / "translation" / "multi30k" / "val.de").read_text(encoding="utf-8").splitlines()
    assert rows and all(row["rejected"] != row["chosen"] for row in rows)  # a random model never gives the reference
    assert [(r["prompt"], r["chosen"]) for r in rows] == [(english[int(r["id"])], german[int(r["id"])]) for r in rows]
    manifest = json.loads((target / "manifest.json").read_text())
    assert manifest["files"]["train.jsonl"]["rows"] == len(rows) and manifest["files"]["validation.jsonl"]["rows"] <= 3
