"""Stores that lie about themselves (issue 17): every command that reads a scene or prediction
store refuses a damaged one with one clear error, never an internal error, a hang or memory taken
on a `zarr.json`'s word.

- A table of edits (`SCENE_CASES`, `PREDICTION_CASES`): shapes, chunk shapes, data types, fill
  values and codecs of each array, the store's own attributes (shape, class table), missing and
  extra arrays, and damaged chunks (truncated, a symbolic link, a FIFO, bytes another codec
  wrote). Each runs through every reading command (`info`, `info --verify`, `split`, `train`,
  `predict`, `evaluate`, `plot`) in the fork-server `Runner`: a metadata lie is refused by each
  at open, in well under a second, writing nothing; damaged data is refused by each command that
  reads it and leaves the others clean.
- Random edits of a `zarr.json` field (hypothesis) through the library: opening and reading every
  part either raises one HsiError or returns exactly the shapes and types the store records.

With HSI_FUZZ_LOG set, each run is tallied (the counts the README records); an internal error
fails the test that met it.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import tempfile
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness import assert_one_line_error, copy_workspace, run_console, snapshot
from test_fuzz_readers import bounded
from hsicli.errors import HsiError

REFUSAL_S = 1.0  # CPU seconds to refuse a store at open (metadata only): about 0.1 s measured


# -- edits --------------------------------------------------------------------------------------


def edit(node: str, **changes):
    """An edit of `node`/zarr.json: keys are top-level fields, `chunks` (the chunk shape) or
    `attributes__NAME`."""
    def apply(folder: Path) -> None:
        meta = folder / node / "zarr.json"
        document = json.loads(meta.read_text())
        for key, value in changes.items():
            if key == "chunks":
                document["chunk_grid"]["configuration"]["chunk_shape"] = value
            elif key.startswith("attributes__"):
                document["attributes"][key.removeprefix("attributes__")] = value
            else:
                document[key] = value
        meta.write_text(json.dumps(document))

    return apply


def remove(node: str):
    return lambda folder: shutil.rmtree(folder / node)


def copy(node: str, to: str):
    return lambda folder: shutil.copytree(folder / node, folder / to)


def first_chunk(folder: Path, node: str) -> Path:
    return min(path for path in (folder / node / "c").rglob("*") if path.is_file())


def truncated(node: str):
    def apply(folder: Path) -> None:
        chunk = first_chunk(folder, node)
        chunk.write_bytes(chunk.read_bytes()[:7])

    return apply


def linked(node: str, target: str):
    """The first chunk replaced by a symbolic link to `target` (relative to the workspace)."""
    def apply(folder: Path) -> None:
        chunk = first_chunk(folder, node)
        chunk.unlink()
        chunk.symlink_to(folder / target)

    return apply


def fifo(node: str, metadata: bool = False):
    """The first chunk (or the node's zarr.json) replaced by a FIFO no one writes to: a read that
    opened it would never end."""
    def apply(folder: Path) -> None:
        path = folder / node / "zarr.json" if metadata else first_chunk(folder, node)
        path.unlink()
        os.mkfifo(path)

    return apply


def both(*edits):
    def apply(folder: Path) -> None:
        for change in edits:
            change(folder)

    return apply


SHARDED = [{"name": "sharding_indexed", "configuration": {
    "chunk_shape": [1, 1, 1], "codecs": [{"name": "bytes", "configuration": {"endian": "little"}}],
    "index_codecs": [{"name": "bytes", "configuration": {"endian": "little"}}, {"name": "crc32c"}],
    "index_location": "end"}}]
GZIP = [{"name": "bytes", "configuration": {"endian": "little"}}, {"name": "gzip", "configuration": {"level": 1}}]
ONE_CLASS = {"attributes__class_names": ["only"], "attributes__class_colors": ["#000000"]}

# Commands reading the scene store s.zarr (predict and evaluate read it through --store and p.zarr).
SCENE_COMMANDS = {
    "info": ("info", "s.zarr"),
    "info --verify": ("info", "--verify", "s.zarr"),
    "split": ("split", "s.zarr", "--ratio", "0.5", "--name", "b"),
    "train": ("train", "s.zarr", "--model", "svm", "--split", "a", "--out", "m2.safetensors"),
    "predict": ("predict", "m.safetensors", "--store", "s.zarr", "--out", "p2.zarr"),
    "evaluate": ("evaluate", "p.zarr"),
    "plot": ("plot", "gt", "s.zarr", "--out", "g.png"),
}
READ_CUBE = {"info --verify", "train", "predict"}  # the only commands that read the cube's chunks
READ_SPLIT = {"train", "evaluate"}
ALL = set(SCENE_COMMANDS)

# id: (edit of a copy of the workspace, the commands that must refuse it (every other command
# ends clean: exit 0 or one error line), whether they refuse it at open (metadata only))
SCENE_CASES = {
    "cube-shape-huge": (edit("s.zarr/cube", shape=[1_000_000, 1_000_000, 30]), ALL, True),
    "cube-one-band-more": (edit("s.zarr/cube", shape=[70, 20, 6]), ALL, True),
    "gt-transposed": (edit("s.zarr/gt", shape=[20, 70]), ALL, True),
    "rgb-four-channels": (edit("s.zarr/rgb", shape=[70, 20, 4]), ALL, True),
    "attribute-shape": (edit("s.zarr", attributes__shape=[70, 20, 6]), ALL, True),
    "attribute-shape-text": (edit("s.zarr", attributes__shape="70x20x5"), ALL, True),
    "cube-chunks-1x1x1": (edit("s.zarr/cube", chunks=[1, 1, 1]), ALL, True),
    "cube-chunks-one-band": (edit("s.zarr/cube", chunks=[64, 20, 1]), ALL, True),
    "cube-chunks-huge": (edit("s.zarr/cube", chunks=[100_000, 100_000, 5]), ALL, True),
    "gt-chunks-1x1": (edit("s.zarr/gt", chunks=[1, 1]), ALL, True),
    "cube-float64": (edit("s.zarr/cube", data_type="float64"), ALL, True),
    "gt-int32": (edit("s.zarr/gt", data_type="int32"), ALL, True),
    "rgb-float32": (edit("s.zarr/rgb", data_type="float32"), ALL, True),
    "cube-fill-nan": (edit("s.zarr/cube", fill_value="NaN"), ALL, True),
    "gt-fill-7": (edit("s.zarr/gt", fill_value=7), ALL, True),
    "cube-sharded": (edit("s.zarr/cube", codecs=SHARDED), ALL, True),
    "cube-unknown-codec": (edit("s.zarr/cube", codecs=[{"name": "no-such-codec"}]), ALL, True),
    "cube-missing": (remove("s.zarr/cube"), ALL, True),
    "gt-missing": (remove("s.zarr/gt"), ALL, True),
    "transform-missing": (remove("s.zarr/transform"), ALL, True),
    "cube-metadata-missing": (lambda f: (f / "s.zarr/cube/zarr.json").unlink(), ALL, True),
    "cube-metadata-fifo": (fifo("s.zarr/cube", metadata=True), ALL, True),
    "root-metadata-fifo": (fifo("s.zarr", metadata=True), ALL, True),
    "root-metadata-a-list": (lambda f: (f / "s.zarr/zarr.json").write_text("[1]"), ALL, True),
    "root-metadata-a-link": (both(lambda f: (f / "s.zarr/zarr.json").rename(f / "elsewhere.json"),
                                  lambda f: (f / "s.zarr/zarr.json").symlink_to(f / "elsewhere.json")), ALL, True),
    "cube-is-a-group": (lambda f: (f / "s.zarr/cube/zarr.json").write_text(
        json.dumps({"zarr_format": 3, "node_type": "group", "attributes": {}})), ALL, True),
    "extra-array": (copy("s.zarr/gt", "s.zarr/extra"), ALL, True),
    "aux-without-has-aux": (copy("s.zarr/cube", "s.zarr/aux"), ALL, True),
    "has-aux-without-aux": (edit("s.zarr", attributes__has_aux=True), ALL, True),
    "class-colors-fewer": (edit("s.zarr", attributes__class_colors=["#000000"]), ALL, True),
    "class-colors-not-colours": (edit("s.zarr", attributes__class_colors=["red", "green", "blue"]), ALL, True),
    "class-names-not-strings": (edit("s.zarr", attributes__class_names=[1, 2, 3]), ALL, True),
    "fingerprint-missing": (edit("s.zarr", attributes__fingerprint=None), ALL, True),
    "transform-array-huge": (edit("s.zarr/transform/offset", shape=[10**9], chunks=[10**9]), ALL, True),
    # Consistent metadata, labels beyond it: refused where the ground truth is read (every command).
    "one-class-name-for-three": (edit("s.zarr", attributes__class_ids=[1], **ONE_CLASS), ALL, False),
    # Damaged chunks: refused by the commands that read them.
    "cube-chunk-truncated": (truncated("s.zarr/cube"), READ_CUBE, False),
    "cube-chunk-symlink": (linked("s.zarr/cube", "s.zarr/gt/c/0/0"), READ_CUBE, False),
    "cube-chunk-fifo": (fifo("s.zarr/cube"), READ_CUBE, False),
    "cube-codec-lie": (edit("s.zarr/cube", codecs=GZIP), READ_CUBE, False),
    "cube-chunks-lie": (edit("s.zarr/cube", chunks=[32, 20, 5]), READ_CUBE, False),
    "gt-chunk-truncated": (truncated("s.zarr/gt"), ALL, False),
    "split-uint16": (edit("s.zarr/splits/a", data_type="uint16"), READ_SPLIT, True),
    "split-transposed": (edit("s.zarr/splits/a", shape=[20, 70]), READ_SPLIT, True),
    "split-chunks-1x1": (edit("s.zarr/splits/a", chunks=[1, 1]), READ_SPLIT, True),
    "split-chunk-symlink": (linked("s.zarr/splits/a", "s.zarr/gt/c/0/0"), READ_SPLIT, False),
}

PREDICTION_COMMANDS = {
    "info": ("info", "p.zarr"),
    "info --verify": ("info", "--verify", "p.zarr"),
    "evaluate": ("evaluate", "p.zarr"),
    "plot map": ("plot", "map", "p.zarr", "--out", "m.png"),
    "plot uncertainty": ("plot", "uncertainty", "p.zarr", "--out", "u.png"),
    "plot confusion": ("plot", "confusion", "p.zarr", "--out", "c.png"),
}
EVERY = set(PREDICTION_COMMANDS)
READ_CLASSES = {"evaluate", "plot map", "plot confusion"}
PREDICTION_CASES = {
    "probabilities-float64": (edit("p.zarr/probabilities", data_type="float64"), EVERY, True),
    "probabilities-one-class-more": (edit("p.zarr/probabilities", shape=[70, 20, 4]), EVERY, True),
    "probabilities-chunks-1x1x1": (edit("p.zarr/probabilities", chunks=[1, 1, 1]), EVERY, True),
    "classes-missing": (remove("p.zarr/classes"), EVERY, True),
    "classes-int64": (edit("p.zarr/classes", data_type="int64"), EVERY, True),
    "classes-huge": (edit("p.zarr/classes", shape=[1_000_000, 1_000_000]), EVERY, True),
    "entropy-chunks-1x1": (edit("p.zarr/entropy", chunks=[1, 1]), EVERY, True),
    "entropy-fill-nan": (edit("p.zarr/entropy", fill_value="NaN"), EVERY, True),
    "attribute-shape": (edit("p.zarr", attributes__shape=[70, 21]), EVERY, True),
    "one-class-name-for-three": (edit("p.zarr", **ONE_CLASS), EVERY, True),  # probabilities hold 3
    "extra-array": (copy("p.zarr/entropy", "p.zarr/extra"), EVERY, True),
    "root-metadata-fifo": (fifo("p.zarr", metadata=True), EVERY, True),
    "root-metadata-a-list": (lambda f: (f / "p.zarr/zarr.json").write_text("[1]"), EVERY, True),
    "embeddings-without-index": (copy("p.zarr/entropy", "p.zarr/embeddings"), EVERY, True),
    "classes-beyond-the-names": (both(remove("p.zarr/probabilities"), edit("p.zarr", **ONE_CLASS)),
                                 READ_CLASSES, False),
    "classes-chunk-truncated": (truncated("p.zarr/classes"), READ_CLASSES, False),
    "probabilities-chunk-symlink": (linked("p.zarr/probabilities", "p.zarr/classes/c/0/0"), {"evaluate"}, False),
}


# -- running ------------------------------------------------------------------------------------


def tally(reader: str, case: str, outcome: str, cpu_seconds: float | None = None) -> None:
    """With HSI_FUZZ_LOG set, one line per input: reader, case, outcome (the counts the README records)."""
    if log := os.environ.get("HSI_FUZZ_LOG"):
        with open(log, "a") as handle:
            handle.write(f"{reader}\t{case}\t{outcome}\t{cpu_seconds or ''}\n")


def run_case(runner, base, tmp_path, case, commands, damage, refusing, at_open) -> None:
    folder = tmp_path / "w"
    copy_workspace(base, folder)
    damage(folder)
    before = snapshot(folder)  # (a FIFO is listed, never opened)
    for name, args in commands.items():
        run = runner.run(args, folder, timeout=60)
        internal = "internal error" in run.stderr or "Traceback" in run.stderr
        tally(f"hsi {name}", case, "internal" if internal else "error" if run.code else "ok", run.cpu_seconds)
        assert not internal, run.describe()
        if name in refusing or run.code != 0:
            assert_one_line_error(run)
            assert snapshot(folder) == before, f"hsi {name} wrote something: {run.describe()}"
        if name in refusing and at_open:  # CPU time: the machine may be shared, the work is what counts
            assert run.cpu_seconds < REFUSAL_S, run.describe()
        if run.code == 0:  # a command that does not read the damaged part wrote its output
            before = snapshot(folder)


@pytest.mark.parametrize("case", sorted(SCENE_CASES))
def test_lying_scene_store(case, runner, base, tmp_path):
    damage, refusing, at_open = SCENE_CASES[case]
    run_case(runner, base, tmp_path, case, SCENE_COMMANDS, damage, refusing, at_open)


@pytest.mark.parametrize("case", sorted(PREDICTION_CASES))
def test_lying_prediction_store(case, runner, base, tmp_path):
    damage, refusing, at_open = PREDICTION_CASES[case]
    run_case(runner, base, tmp_path, case, PREDICTION_COMMANDS, damage, refusing, at_open)


@pytest.mark.parametrize("case, phrase", [("cube-shape-huge", "1000000 × 1000000 × 30"),
                                          ("cube-chunks-1x1x1", "1 × 1 × 1")])
def test_the_issues_stores_are_refused_at_once_by_the_console_script(case, phrase, base, tmp_path):
    """Issue 17's acceptance: refused by info, info --verify, split, train and predict in the real
    `hsi` process, under RLIMIT_AS = 1 GiB, in well under a second of CPU, writing nothing."""
    folder = tmp_path / "w"
    copy_workspace(base, folder)
    SCENE_CASES[case][0](folder)
    before = snapshot(folder)
    for name in ("info", "info --verify", "split", "train", "predict"):
        started = resource.getrusage(resource.RUSAGE_CHILDREN)
        run = run_console(SCENE_COMMANDS[name], folder, address_space=2**30, timeout=60)
        ended = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = ended.ru_utime + ended.ru_stime - started.ru_utime - started.ru_stime
        assert_one_line_error(run, "s.zarr", "cube", phrase)
        assert cpu < 1.0, (name, cpu)  # the whole process: start-up, imports and the refusal
        tally(f"hsi {name} (console)", case, "error", round(cpu, 3))
    assert snapshot(folder) == before


# -- random edits through the library --------------------------------------------------------------

SCENE_NODES = ["s.zarr", "s.zarr/cube", "s.zarr/gt", "s.zarr/rgb", "s.zarr/transform/offset", "s.zarr/splits/a"]
PREDICTION_NODES = ["p.zarr", "p.zarr/classes", "p.zarr/entropy", "p.zarr/probabilities"]
SIZES = [0, 1, 3, 5, 16, 20, 64, 70, 10**6, 2**40, -1]
JSON_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-2, 10**6), st.sampled_from(["NaN", "abc", "#00ff00"]),
                        st.lists(st.sampled_from(["a", "#000000", 1, 3, None]), max_size=4))
FIELDS = {
    "shape": st.lists(st.sampled_from(SIZES), max_size=4),
    "chunks": st.lists(st.sampled_from(SIZES), max_size=4),
    "data_type": st.sampled_from(["float32", "float64", "int16", "uint8", "uint16", "int64", "bool", "complex64",
                                  "string", "nonsense", 7]),
    "fill_value": st.sampled_from([0, 1, -1, "NaN", "Infinity", 1e300, None, "abc", True]),
    "codecs": st.sampled_from([[], GZIP, SHARDED, [{"name": "no-such-codec"}], "junk",
                               [{"name": "bytes", "configuration": {"endian": "little"}}, {"name": "zstd"}]]),
}
ATTRIBUTES = ["shape", "class_names", "class_colors", "class_ids", "has_aux", "fingerprint", "kind", "hsi_schema"]


@st.composite
def zarr_json_edit(draw, nodes):
    node = draw(st.sampled_from(nodes))
    if node.endswith(".zarr"):
        key = draw(st.sampled_from(ATTRIBUTES))
        return node, {f"attributes__{key}": draw(JSON_VALUES)}
    field = draw(st.sampled_from(sorted(FIELDS)))
    return node, {field: draw(FIELDS[field])}


def read_scene_store(folder: Path) -> list[np.ndarray]:
    from hsicli.store.inspect import describe_scene
    from hsicli.store.scene import SceneStore

    store = SceneStore.open(folder / "s.zarr")
    transform, _ = store.transform()
    store.verify()
    describe_scene(store)
    return [store.cube(), store.gt(), store.rgb(), *(transform[k] for k in sorted(transform)),
            store.read_layer("splits", "a").data]


def read_prediction_store(folder: Path) -> list[np.ndarray]:
    from hsicli.store.prediction import PredictionStore

    store = PredictionStore.open(folder / "p.zarr")
    store.describe()
    return [store.classes(), store.entropy(), store.probabilities()]


def error_or_intact(base: Path, read, change) -> str:
    """Read everything from a copy of `base` whose `node` had `changes`: one HsiError (one line,
    with a hint), or exactly what the intact store holds — never a lie read as data."""
    node, changes = change
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        for store in ("s.zarr", "p.zarr"):
            shutil.copytree(base / store, folder / store)
        expected = read(folder)
        edit(node, **changes)(folder)
        with bounded():
            try:
                found = read(folder)
            except HsiError as error:
                assert error.message.strip() and "\n" not in error.message and error.hint, repr(error.message)
                return "error"
    assert len(found) == len(expected)
    for got, want in zip(found, expected):
        assert got.dtype == want.dtype and np.array_equal(got, want), f"{node} {changes} was read as data"
    return "read"


STORE_FUZZ = settings(max_examples=60, deadline=timedelta(seconds=20), derandomize=True,
                      suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@STORE_FUZZ
@given(change=zarr_json_edit(SCENE_NODES))
def test_random_scene_store_edits(base, change):
    outcome = error_or_intact(base, read_scene_store, change)
    tally("SceneStore", f"{change[0]}:{next(iter(change[1]))}", outcome)


@STORE_FUZZ
@given(change=zarr_json_edit(PREDICTION_NODES))
def test_random_prediction_store_edits(base, change):
    outcome = error_or_intact(base, read_prediction_store, change)
    tally("PredictionStore", f"{change[0]}:{next(iter(change[1]))}", outcome)
