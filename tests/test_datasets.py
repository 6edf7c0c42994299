"""The scene registry: consistent entries, lookups, identification, checksums of the shared files."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from hsicli.cli.datasets import datasets as datasets_command
from hsicli.data.datasets import (
    RECEIPT_NAME,
    ROLES,
    DatasetInfo,
    RemoteFile,
    _key,
    _stem_key,
    find_local,
    get_dataset,
    identify,
    list_datasets,
)
from hsicli.data.preprocess import parse_band_list
from hsicli.errors import HsiError

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
ALL = list_datasets()
EXPECTED = {
    "indian_pines", "salinas", "salinasA", "paviaU", "paviaC", "ksc", "botswana", "houston2013",
    "longkou", "trento", "muufl", "augsburg",
}  # fmt: skip


def test_the_twelve_scenes_of_issue_2_are_registered():
    assert {info.name for info in ALL} == EXPECTED


@pytest.mark.parametrize("info", ALL, ids=lambda info: info.name)
def test_entry_is_consistent(info: DatasetInfo):
    assert len(info.class_colors) == len(info.class_names) > 1
    assert all(re.fullmatch(r"#[0-9a-f]{6}", color) for color in info.class_colors), info.class_colors
    assert len(set(info.class_colors)) == len(info.class_colors), "two classes share a colour"
    assert len(set(info.class_names)) == len(info.class_names)
    if info.class_ids is not None:
        assert len(info.class_ids) == len(info.class_names)
        assert list(info.class_ids) == sorted(set(info.class_ids)) and info.class_ids[0] >= 1
    height, width, bands = info.shape
    assert min(height, width, bands) > 1
    assert set(info.aux) <= {"lidar", "sar", "msi"}
    assert [f.role for f in info.files].count("cube") == 1
    assert "gt" in {f.role for f in info.files} or {"train_map", "test_map"} <= {f.role for f in info.files}
    for file in info.files:
        assert file.role in ROLES
        assert file.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", file.sha256)
        assert file.url is not None or info.homepage, "a file without address needs a homepage"
        for url in (file.url, *file.mirrors):
            assert url is None or url.startswith("https://")
    # Entries that share a file name describe the same bytes.
    for file in info.files:
        twin = info.unique_files()[[f.name for f in info.unique_files()].index(file.name)]
        assert (file.url, file.sha256, file.size, file.mirrors) == (twin.url, twin.sha256, twin.size, twin.mirrors)


@pytest.mark.parametrize("info", [i for i in ALL if i.water_bands], ids=lambda info: info.name)
def test_water_bands_lie_inside_the_band_count_they_refer_to(info: DatasetInfo):
    assert info.water_bands_of is not None and info.water_bands_of >= info.shape[2]
    removed = parse_band_list(info.water_bands, info.water_bands_of)
    # Removing them from the raw scene gives the distributed band count.
    assert info.water_bands_of - len(removed) == info.shape[2]


def test_water_band_lists_from_the_papers():
    ip, sa = get_dataset("indian_pines"), get_dataset("salinas")
    assert (ip.water_bands, ip.water_bands_of) == ("104-108,150-163,220", 220)
    assert (sa.water_bands, sa.water_bands_of) == ("108-112,154-167,224", 224)
    assert get_dataset("paviaU").water_bands is None and get_dataset("paviaU").water_bands_of is None


def test_names_aliases_and_file_names_are_unique():
    keys = [_key(alias) for info in ALL for alias in (info.name, *info.aliases)]
    assert len(keys) == len(set(keys))
    file_names = [name.lower() for info in ALL for name in {f.name for f in info.files}]
    assert len(file_names) == len(set(file_names)), "fetch and find_local look files up by name"
    # No file stem names another scene, or identify() would be ambiguous.
    for info in ALL:
        for file in info.files:
            owner = [i.name for i in ALL if _key(i.name) == _stem_key(Path(file.name).stem)
                     or _stem_key(Path(file.name).stem) in {_key(a) for a in i.aliases}]  # fmt: skip
            assert owner in ([], [info.name]), (file.name, owner)


def test_lookup_ignores_case_and_separators():
    assert get_dataset("SalinasA").name == "salinasA"
    assert get_dataset("salinas-a").name == "salinasA"
    assert get_dataset("Indian Pines").name == "indian_pines"
    assert get_dataset("IP").name == "indian_pines"
    assert get_dataset("pavia_university").name == "paviaU"
    assert get_dataset("salinas").name == "salinas"


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(HsiError) as caught:
        get_dataset("atlantis")
    assert "atlantis" in caught.value.message and "salinasA" in caught.value.message
    assert caught.value.hint


def test_salinas_a_keeps_salinas_ids_names_and_colours():
    sa, salinas = get_dataset("salinasA"), get_dataset("salinas")
    assert sa.class_ids == (1, 10, 11, 12, 13, 14)
    for position, class_id in enumerate(sa.class_ids):
        assert sa.class_names[position] == salinas.class_names[class_id - 1]
        assert sa.class_colors[position] == salinas.class_colors[class_id - 1]
    assert sa.class_names[0] == "Broccoli green weeds 1" and sa.class_names[-1] == "Lettuce romaine 7wk"


def test_identify_needs_the_name_and_the_spatial_shape():
    assert identify(Path("/x/SalinasA_corrected.mat"), (83, 86, 204)).name == "salinasA"
    assert identify(Path("salinasa_corrected.MAT"), (83, 86, 204)).name == "salinasA"
    assert identify(Path("SalinasA_gt.mat"), (83, 86)).name == "salinasA"
    assert identify(Path("SalinasA_corrected.mat"), (86, 83, 204)) is None
    assert identify(Path("SalinasA_corrected.mat"), (512, 217, 204)) is None
    assert identify(Path("Indian_pines_corrected.mat"), (145, 145, 200)).name == "indian_pines"
    assert identify(Path("Indian_pines.mat"), (145, 145, 220)).name == "indian_pines"
    assert identify(Path("ip.mat"), (145, 145, 200)).name == "indian_pines"
    assert identify(Path("PaviaU.mat"), (610, 340, 103)).name == "paviaU"
    assert identify(Path("Pavia.mat"), (1096, 715, 102)).name == "paviaC"
    assert identify(Path("Italy_hsi.mat"), (166, 600, 63)).name == "trento"
    assert identify(Path("my_scene.mat"), (83, 86, 204)) is None


def test_mediawiki_addresses_follow_the_md5_layout():
    # EHU's wiki stores File:X under uploads/md5(X)[0]/md5(X)[:2]/X; these two are well known.
    assert get_dataset("indian_pines").cube.url.endswith("/uploads/6/67/Indian_pines_corrected.mat")
    assert get_dataset("paviaU").cube.url.endswith("/uploads/e/ee/PaviaU.mat")
    for info in ALL:
        for file in info.files:
            if file.url and "ehu.eus" in file.url:
                digest = hashlib.md5(file.name.encode()).hexdigest()
                assert file.url.endswith(f"/{digest[0]}/{digest[:2]}/{file.name}")


def _shared_sums() -> dict[str, str]:
    sums = SHARED / "SHA256SUMS"
    if not sums.is_file():
        pytest.skip(f"shared data not found at {SHARED}")
    return {line.split()[1]: line.split()[0] for line in sums.read_text().splitlines() if line.strip()}


# Shared file -> (scene, registry file name): the shared folder keeps some files under other names.
SHARED_FILES = {
    "salinasA/SalinasA_corrected.mat": ("salinasA", "SalinasA_corrected.mat"),
    "salinasA/SalinasA_gt.mat": ("salinasA", "SalinasA_gt.mat"),
    "groundtruth/indian_pines_corrected_gt.mat": ("indian_pines", "Indian_pines_gt.mat"),
    "groundtruth/salinas_gt.mat": ("salinas", "Salinas_gt.mat"),
    "groundtruth/paviaU_gt.mat": ("paviaU", "PaviaU_gt.mat"),
    "groundtruth/paviaC_gt.mat": ("paviaC", "Pavia_gt.mat"),
    "groundtruth/KSC_gt.mat": ("ksc", "KSC_gt.mat"),
    "groundtruth/Botswana_gt.mat": ("botswana", "Botswana_gt.mat"),
    "groundtruth/houston_gt.mat": ("houston2013", "houston_gt.mat"),
    "groundtruth/allgrd.mat": ("trento", "allgrd.mat"),
    "groundtruth/Italy_lidar.mat": ("trento", "Italy_lidar.mat"),
}


@pytest.mark.parametrize("relative", sorted(SHARED_FILES))
def test_registry_checksums_match_the_shared_files(relative: str):
    sums = _shared_sums()
    scene, file_name = SHARED_FILES[relative]
    file = next(f for f in get_dataset(scene).files if f.name == file_name)
    path = SHARED / relative
    data = path.read_bytes()
    assert hashlib.sha256(data).hexdigest() == sums[relative] == file.sha256
    assert file.size == len(data)


def test_every_recorded_checksum_is_one_of_the_shared_files():
    sums = set(_shared_sums().values())
    recorded = {f.sha256 for info in ALL for f in info.files if f.sha256}
    assert recorded <= sums, "a checksum the shared data does not back"
    assert len(recorded) == len(SHARED_FILES)


def test_shared_label_maps_have_the_registered_shape_and_classes():
    pytest.importorskip("scipy")
    from scipy.io import loadmat

    _shared_sums()
    for relative, (scene, file_name) in SHARED_FILES.items():
        info = get_dataset(scene)
        file = next(f for f in info.files if f.name == file_name)
        if file.role not in ("gt", "train_map"):
            continue
        labels = loadmat(SHARED / relative)[file.var]
        assert labels.shape == info.shape[:2], relative
        ids = sorted(int(v) for v in set(labels.ravel().tolist()) - {0})
        assert ids == list(info.class_ids or range(1, len(info.class_names) + 1)), relative


def test_find_local_finds_files_one_folder_down_and_checks_them(tmp_path: Path):
    info = DatasetInfo(
        name="toy", title="Toy", sensor="none", shape=(2, 3, 4), class_names=("a", "b"),
        class_colors=("#000000", "#ffffff"), class_ids=None, water_bands=None, water_bands_of=None, aux=(),
        files=(
            RemoteFile("toy.mat", None, hashlib.sha256(b"cube").hexdigest(), 4, "cube"),
            RemoteFile("Toy_gt.mat", None, None, None, "gt"),
        ),
        aliases=(), citation="", homepage="https://example.org",
    )  # fmt: skip
    root = tmp_path / "data"
    (root / "anything").mkdir(parents=True)
    assert find_local(info, [root]) is None
    (root / "anything" / "toy.mat").write_bytes(b"cube")
    assert find_local(info, [root]) is None  # the ground truth is still missing
    (root / "anything" / "toy_gt.mat").write_bytes(b"labels")  # other case: still found
    found = find_local(info, [tmp_path / "absent", root])
    assert found == {"toy.mat": root / "anything" / "toy.mat", "Toy_gt.mat": root / "anything" / "toy_gt.mat"}

    (root / "anything" / "toy.mat").write_bytes(b"CUBE")  # same size, other bytes
    with pytest.raises(HsiError, match="sha256"):
        find_local(info, [root])
    assert find_local(info, [root], verify=False) is not None
    (root / "anything" / "toy.mat").write_bytes(b"cube")

    # Without a registry checksum, the sha256 in a fetch receipt beside the file is checked.
    receipt = {"files": {"Toy_gt.mat": {"sha256": hashlib.sha256(b"other").hexdigest()}}}
    (root / "anything" / RECEIPT_NAME).write_text(json.dumps(receipt))
    with pytest.raises(HsiError, match="Toy_gt.mat"):
        find_local(info, [root])


def test_find_local_on_the_shared_salinas_a():
    _shared_sums()
    found = find_local(get_dataset("salinasA"), [SHARED])
    assert found == {
        "SalinasA_corrected.mat": SHARED / "salinasA" / "SalinasA_corrected.mat",
        "SalinasA_gt.mat": SHARED / "salinasA" / "SalinasA_gt.mat",
    }


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command("datasets")(datasets_command)
    app.command("other")(lambda: None)  # two commands, so the command name is parsed
    return app


def test_cli_json_lists_every_scene_on_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    _shared_sums()
    monkeypatch.setenv("HSI_DATA_DIR", str(SHARED))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    result = CliRunner().invoke(_app(), ["datasets", "--json"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    records = {record["name"]: record for record in json.loads(lines[0])["datasets"]}
    assert set(records) == EXPECTED
    sa = records["salinasA"]
    assert sa["shape"] == [83, 86, 204] and sa["class_ids"] == [1, 10, 11, 12, 13, 14]
    assert sa["local"]["SalinasA_gt.mat"] == str(SHARED / "salinasA" / "SalinasA_gt.mat")
    assert records["salinas"]["local"] is None  # only its ground truth is shared
    assert records["indian_pines"]["water_bands"] == "104-108,150-163,220"


def test_cli_table_goes_to_stderr(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("HSI_DATA_DIR", raising=False)
    result = CliRunner().invoke(_app(), ["datasets"])
    assert result.exit_code == 0
    assert result.stdout == ""
    assert "salinasA" in result.stderr and "83×86×204" in result.stderr
