"""`hsi models`: a listing that fits 80 columns without loading torch, details per model."""

from __future__ import annotations

import json
import subprocess
import sys

from hsicli.models import get_model_spec, list_models
from hsicli.models.catalogue import DEFAULT_BANDS, DEFAULT_CLASSES, STORED_ROWS, model_arguments, paper_name


def test_listing_fits_80_columns(hsi):
    result = hsi("models", env={"COLUMNS": "80"})
    assert result.returncode == 0 and result.stdout == "", result.stderr
    lines = result.stderr.splitlines()
    assert max(len(line) for line in lines) <= 80 and "…" not in result.stderr
    names = list_models()
    rows = [line.split() for line in lines if line.split() and line.split()[0] in names]
    assert [row[0] for row in rows] == names  # one line per model: nothing wrapped
    for row in rows:
        spec = get_model_spec(row[0])
        assert row[1] == spec.kind.name and " ".join(row[2:]).startswith(paper_name(spec.paper))
        assert (row[-1] == "—") == (not spec.kind.torch)  # MACs: a count for networks only
    assert paper_name("SVM, RBF kernel (Melgani & Bruzzone 2004)") == "SVM"


def test_listing_reads_the_stored_rows_without_torch():
    code = ("import sys; from hsicli.cli import main; sys.argv = ['hsi', 'models', '--json']\n"
            "try: main()\nexcept SystemExit: pass\n"
            "assert 'torch' not in sys.modules, 'torch loaded'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    listed = json.loads(result.stdout)
    assert (listed["bands"], listed["classes"]) == (DEFAULT_BANDS, DEFAULT_CLASSES)
    assert listed["models"] == json.loads(STORED_ROWS.read_text())["models"]
    # Everything but the counts (checked in test_complexity) follows the registry.
    assert [row["name"] for row in listed["models"]] == list_models()
    for row in listed["models"]:
        spec = get_model_spec(row["name"])
        assert (row["kind"], row["paper"], row["description"], row["patch"]) == (
            spec.kind.name, spec.paper, spec.description, spec.defaults.patch)
        assert row["defaults"] == json.loads(json.dumps(spec.defaults.to_dict()))
        assert row["arguments"] == model_arguments(spec)


def test_stored_specs_equal_the_live_registry():
    """train and predict check a run against the spec stored in catalogue.json, before torch is
    loaded: it must be the registry's in every field but the builder."""
    from dataclasses import fields

    from hsicli.models.registry import stored_model_spec

    for name in list_models():
        live, stored = get_model_spec(name), stored_model_spec(name)
        for field in fields(live):
            if field.name != "builder":
                assert getattr(stored, field.name) == getattr(live, field.name), (name, field.name)


def test_details_show_each_kind_its_own_settings(cli):
    svm = cli("models", "svm")
    assert svm.exit_code == 0, svm.stderr
    assert "C 100, gamma scale, kernel rbf" in svm.stderr and "adamw" not in svm.stderr
    assert "n_estimators 200, max_depth none, max_features sqrt" in cli("models", "rf").stderr
    clares = cli("models", "claresnet").stderr
    assert "paper protocol" in clares and "adamw" in clares and "0.0001" in clares and "11×11 window" in clares
    assert "17,326,142" in clares  # the exact count, where the listing shows 17.3 M


def test_other_inputs_are_counted_live(cli):
    result = cli("models", "litec2anet", "--bands", "103", "--classes", "9", "--json")
    assert result.exit_code == 0, result.stderr
    (row,) = json.loads(result.stdout)["models"]
    stored = json.loads(STORED_ROWS.read_text())["models"]
    assert row["parameters"] != next(r for r in stored if r["name"] == "litec2anet")["parameters"]
    from hsicli.models import create_model
    from hsicli.models.complexity import count_parameters

    assert row["parameters"] == count_parameters(create_model("litec2anet", 103, 9))
    assert cli("models", "nosuchmodel").exit_code == 1
