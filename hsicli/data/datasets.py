"""The registry of known benchmark scenes: class names, colours, bands, files and checksums.

Pure data and lookups (no numpy), so `hsi datasets` and completion stay instant. `hsi prep`
calls `identify` to fill in class names and colours of a recognised scene; `hsi fetch` uses
`files` to download or find a scene (`hsicli.data.fetch`).

Checksums: a sha256 is recorded only where the bytes were checked against a copy at the stated
address (the files in ../shared/data, see tests/test_datasets.py). `None` means unknown: the
first download records what it saw in the fetch receipt and later look-ups verify against that.

File roles: "cube" (the hyperspectral cube), "gt" (full ground truth), "train_map"/"test_map"
(a standard fixed split), "aux" (co-registered LiDAR/SAR/MSI). Several entries may name the
same file (one .mat holding several arrays); `var` names the array inside it, and a dotted
`var` ("hsi.Data", "hsi.Lidar[0].z") is a field path in a MATLAB struct ([i]: 0-based cell index).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from hsicli.errors import HsiError

RECEIPT_NAME = "hsi-fetch.json"  # written by `hsi fetch` beside the files it downloaded
ROLES = ("cube", "gt", "train_map", "test_map", "aux")


@dataclass(frozen=True)
class RemoteFile:
    name: str  # file name as distributed (and as stored locally)
    url: str | None  # canonical address; None: no direct download (see DatasetInfo.homepage)
    sha256: str | None  # None: unknown, verified on first download and recorded in the receipt
    size: int | None  # bytes, when known
    role: str  # one of ROLES
    var: str | None = None  # array inside the file
    mirrors: tuple[str, ...] = ()  # further addresses of byte-identical copies, tried in order


@dataclass(frozen=True)
class DatasetInfo:
    name: str  # canonical id
    title: str
    sensor: str
    shape: tuple[int, int, int]  # (H, W, bands as distributed in the cube file)
    class_names: tuple[str, ...]
    class_colors: tuple[str, ...]  # '#rrggbb', one per class, in class_ids order
    class_ids: tuple[int, ...] | None  # ids in the ground-truth file when they are not 1..C
    water_bands: str | None  # 1-based inclusive, as the literature writes the removed bands
    water_bands_of: int | None  # the band count that list refers to (the raw scene)
    aux: tuple[str, ...]  # auxiliary modalities the literature pairs with the scene
    files: tuple[RemoteFile, ...]
    aliases: tuple[str, ...]
    citation: str
    homepage: str = ""
    notes: str = ""

    @property
    def cube(self) -> RemoteFile:
        return next(f for f in self.files if f.role == "cube")

    def unique_files(self) -> tuple[RemoteFile, ...]:
        """One entry per distinct file name (several roles can share a file)."""
        seen: dict[str, RemoteFile] = {}
        for f in self.files:
            seen.setdefault(f.name, f)
        return tuple(seen.values())


# SPy's default class palette (`spectral.spy_colors`, entries 1..), a common choice for HSI
# class maps; used for every scene without a scene-specific palette.
_SPY = (
    "#ff0000", "#00ff00", "#0000ff", "#ffff00", "#ff00ff", "#00ffff", "#c86400", "#00c864",
    "#6400c8", "#c80064", "#64c800", "#0064c8", "#964b4b", "#4b964b", "#4b4b96", "#ff6464",
    "#64ff64", "#6464ff", "#ff964b", "#4bff96",
)  # fmt: skip

# One semantic palette for the two Pavia scenes, so a material has the same colour in both.
_PAVIA = {
    "Water": "#0000ff", "Trees": "#008000", "Asphalt": "#c0c0c0", "Self-Blocking Bricks": "#ff0000",
    "Bitumen": "#800080", "Tiles": "#ff8000", "Shadows": "#ffff00", "Meadows": "#00ff00",
    "Bare Soil": "#a55229", "Gravel": "#00ffff", "Painted metal sheets": "#ff00ff",
}  # fmt: skip

_EHU = "https://www.ehu.eus/ccwintco/uploads"
_EHU_HOME = "https://www.ehu.eus/ccwintco/index.php/Hyperspectral_Remote_Sensing_Scenes"
# mhaut/HSI-datasets at a fixed commit: byte-identical copies of the ground-truth files in
# ../shared/data (checked blob by blob), used as a second address when the EHU wiki refuses.
_MHAUT = "https://raw.githubusercontent.com/mhaut/HSI-datasets/29efb503bdde94f620ba3873d3a56039fef18257/Classification"
_TRENTO = "https://raw.githubusercontent.com/tyust-dayu/Trento/b4afc449ce5d6936ddc04fe267d86f9f35536afd"
_MUUFL = "https://raw.githubusercontent.com/GatorSense/MUUFLGulfport/v0.1/MUUFLGulfportSceneLabels"

_GIC = (
    "Distributed by the Grupo de Inteligencia Computacional (UPV/EHU), "
    "Hyperspectral Remote Sensing Scenes, " + _EHU_HOME
)
_HAM_2005 = (
    "Ham, J., Chen, Y., Crawford, M. M., Ghosh, J. (2005). Investigation of the random forest "
    "framework for classification of hyperspectral data. IEEE TGRS 43(3), 492-501."
)

_SALINAS_CLASSES = (
    "Broccoli green weeds 1", "Broccoli green weeds 2", "Fallow", "Fallow rough plow", "Fallow smooth",
    "Stubble", "Celery", "Grapes untrained", "Soil vineyard develop", "Corn senesced green weeds",
    "Lettuce romaine 4wk", "Lettuce romaine 5wk", "Lettuce romaine 6wk", "Lettuce romaine 7wk",
    "Vineyard untrained", "Vineyard vertical trellis",
)  # fmt: skip
_SALINAS_A_IDS = (1, 10, 11, 12, 13, 14)  # SalinasA's ground truth keeps Salinas' class ids


def _ehu(name: str, sha256: str | None = None, size: int | None = None, *, role: str, var: str,
         mirror: str | None = None) -> RemoteFile:  # fmt: skip
    """A file on the EHU wiki. MediaWiki stores uploads under md5(name)[0]/md5(name)[:2]/."""
    digest = hashlib.md5(name.encode()).hexdigest()
    mirrors = (f"{_MHAUT}/{mirror}",) if mirror else ()
    return RemoteFile(name, f"{_EHU}/{digest[0]}/{digest[:2]}/{name}", sha256, size, role, var, mirrors)


def _spy(n: int) -> tuple[str, ...]:
    return _SPY[:n]


_DATASETS: tuple[DatasetInfo, ...] = (
    DatasetInfo(
        name="indian_pines",
        title="Indian Pines",
        sensor="AVIRIS",
        shape=(145, 145, 200),
        class_names=(
            "Alfalfa", "Corn-notill", "Corn-mintill", "Corn", "Grass-pasture", "Grass-trees",
            "Grass-pasture-mowed", "Hay-windrowed", "Oats", "Soybean-notill", "Soybean-mintill",
            "Soybean-clean", "Wheat", "Woods", "Buildings-Grass-Trees-Drives", "Stone-Steel-Towers",
        ),  # fmt: skip
        class_colors=_spy(16),
        class_ids=None,
        water_bands="104-108,150-163,220",  # CLAReSNet §IV-A: 220 -> 200 bands
        water_bands_of=220,
        aux=("lidar",),  # HSIseg Table 1: simulated LiDAR
        files=(
            _ehu("Indian_pines_corrected.mat", role="cube", var="indian_pines_corrected"),
            _ehu("Indian_pines_gt.mat",
                 "65c4687a8ab04f6da4789799bc3bc4f6e88bccac3ed6a2e6ae367e5e6b9e429c", 1125,
                 role="gt", var="indian_pines_gt", mirror="indian_pines_corrected_gt.mat"),  # fmt: skip
        ),
        aliases=("ip", "indian"),
        citation=(
            "Baumgardner, M. F., Biehl, L. L., Landgrebe, D. A. (2015). 220 Band AVIRIS Hyperspectral "
            "Image Data Set: June 12, 1992 Indian Pine Test Site 3. Purdue University Research "
            "Repository. doi:10.4231/R7RX991C. " + _GIC
        ),
        homepage=_EHU_HOME,
        notes="The cube is the 200-band corrected file; the water bands refer to the 220-band Indian_pines.mat.",
    ),
    DatasetInfo(
        name="salinas",
        title="Salinas Valley",
        sensor="AVIRIS",
        shape=(512, 217, 204),
        class_names=_SALINAS_CLASSES,
        class_colors=_spy(16),
        class_ids=None,
        water_bands="108-112,154-167,224",  # CLAReSNet §IV-A: 224 -> 204 bands
        water_bands_of=224,
        aux=(),
        files=(
            _ehu("Salinas_corrected.mat", role="cube", var="salinas_corrected"),
            _ehu("Salinas_gt.mat",
                 "ecfab4d31ef5553f097943235d8ea502038eb4a2067b2ad10b33e37c949955e2", 4277,
                 role="gt", var="salinas_gt", mirror="salinas_gt.mat"),  # fmt: skip
        ),
        aliases=("sa", "sv", "salinas_valley"),
        citation="AVIRIS scene over Salinas Valley, California (3.7 m). " + _GIC,
        homepage=_EHU_HOME,
    ),
    DatasetInfo(
        name="salinasA",
        title="Salinas-A",
        sensor="AVIRIS",
        shape=(83, 86, 204),
        class_names=tuple(_SALINAS_CLASSES[i - 1] for i in _SALINAS_A_IDS),
        class_colors=tuple(_spy(16)[i - 1] for i in _SALINAS_A_IDS),  # the same colours as in Salinas
        class_ids=_SALINAS_A_IDS,
        water_bands="108-112,154-167,224",
        water_bands_of=224,
        aux=(),
        files=(
            _ehu("SalinasA_corrected.mat",
                 "d75684ed3ab71a1024cee0f9db9061f50a3523a92ff5edfbbb1eed976b9f1721", 1539086,
                 role="cube", var="salinasA_corrected"),  # fmt: skip
            _ehu("SalinasA_gt.mat",
                 "17814c1d3296c0e29b27f320f2c4174d2a68adb87e376abe78f02923e2c2e454", 587,
                 role="gt", var="salinasA_gt"),  # fmt: skip
        ),
        aliases=(),
        citation="AVIRIS Salinas Valley subscene (samples 591-676, lines 158-240 of Salinas). " + _GIC,
        homepage=_EHU_HOME,
        notes="Ground-truth ids are Salinas' 1 and 10-14.",
    ),
    DatasetInfo(
        name="paviaU",
        title="Pavia University",
        sensor="ROSIS-03",
        shape=(610, 340, 103),
        class_names=(
            "Asphalt", "Meadows", "Gravel", "Trees", "Painted metal sheets", "Bare Soil", "Bitumen",
            "Self-Blocking Bricks", "Shadows",
        ),  # fmt: skip
        class_colors=tuple(_PAVIA[c] for c in (
            "Asphalt", "Meadows", "Gravel", "Trees", "Painted metal sheets", "Bare Soil", "Bitumen",
            "Self-Blocking Bricks", "Shadows",
        )),  # fmt: skip
        class_ids=None,
        water_bands=None,  # 12 noisy bands of 115 were removed before distribution; no list published
        water_bands_of=None,
        aux=("lidar",),  # HSIseg Table 1: simulated LiDAR
        files=(
            _ehu("PaviaU.mat", role="cube", var="paviaU"),
            _ehu("PaviaU_gt.mat",
                 "23f6a426928f9b32984adffe659e29f554f9fb6c93b5a107528d308d5087a829", 11005,
                 role="gt", var="paviaU_gt", mirror="paviaU_gt.mat"),  # fmt: skip
        ),
        aliases=("pu", "up", "pavia_university"),
        citation="ROSIS scene over the University of Pavia, courtesy of P. Gamba (University of Pavia). " + _GIC,
        homepage=_EHU_HOME,
    ),
    DatasetInfo(
        name="paviaC",
        title="Pavia Centre",
        sensor="ROSIS-03",
        shape=(1096, 715, 102),
        class_names=(
            "Water", "Trees", "Asphalt", "Self-Blocking Bricks", "Bitumen", "Tiles", "Shadows",
            "Meadows", "Bare Soil",
        ),  # fmt: skip
        class_colors=tuple(_PAVIA[c] for c in (
            "Water", "Trees", "Asphalt", "Self-Blocking Bricks", "Bitumen", "Tiles", "Shadows",
            "Meadows", "Bare Soil",
        )),  # fmt: skip
        class_ids=None,
        water_bands=None,  # 13 noisy bands of 115 removed before distribution; no list published
        water_bands_of=None,
        aux=(),
        files=(
            _ehu("Pavia.mat", role="cube", var="pavia"),
            _ehu("Pavia_gt.mat",
                 "7eb54ab81b404dd3ae572e6d0ec211595029e5a847bec2cfb8f9e72d07066b69", 34887,
                 role="gt", var="pavia_gt", mirror="paviaC_gt.mat"),  # fmt: skip
        ),
        aliases=("pc", "pavia", "pavia_centre", "pavia_center"),
        citation="ROSIS scene over Pavia city centre, courtesy of P. Gamba (University of Pavia). " + _GIC,
        homepage=_EHU_HOME,
    ),
    DatasetInfo(
        name="ksc",
        title="Kennedy Space Center",
        sensor="AVIRIS",
        shape=(512, 614, 176),
        class_names=(
            "Scrub", "Willow swamp", "Cabbage palm hammock", "Cabbage palm/oak hammock", "Slash pine",
            "Oak/broadleaf hammock", "Hardwood swamp", "Graminoid marsh", "Spartina marsh",
            "Cattail marsh", "Salt marsh", "Mud flats", "Water",
        ),  # fmt: skip
        class_colors=_spy(13),
        class_ids=None,
        water_bands=None,  # water-absorption and low-SNR bands removed before distribution (224 -> 176)
        water_bands_of=None,
        aux=(),
        files=(
            _ehu("KSC.mat", role="cube", var="KSC"),
            _ehu("KSC_gt.mat",
                 "a1d6ab9293691006bd4d9742d1a1e1c141b1aaa5fbc5fa128b33c1d09038510b", 3240,
                 role="gt", var="KSC_gt", mirror="KSC_gt.mat"),  # fmt: skip
        ),
        aliases=("kennedy_space_center",),
        citation=_HAM_2005 + " " + _GIC,
        homepage=_EHU_HOME,
    ),
    DatasetInfo(
        name="botswana",
        title="Botswana",
        sensor="Hyperion (EO-1)",
        shape=(1476, 256, 145),
        class_names=(
            "Water", "Hippo grass", "Floodplain grasses 1", "Floodplain grasses 2", "Reeds", "Riparian",
            "Firescar", "Island interior", "Acacia woodlands", "Acacia shrublands", "Acacia grasslands",
            "Short mopane", "Mixed mopane", "Exposed soils",
        ),  # fmt: skip
        class_colors=_spy(14),
        class_ids=None,
        # The complement of the 145 kept bands 10-55, 82-97, 102-119, 134-164, 187-220 (EHU wiki):
        # uncalibrated and noisy bands covering the water-absorption features.
        water_bands="1-9,56-81,98-101,120-133,165-186,221-242",
        water_bands_of=242,
        aux=(),
        files=(
            _ehu("Botswana.mat", role="cube", var="Botswana"),
            _ehu("Botswana_gt.mat",
                 "668394905e10e629c16584bfd02b0f533b96d6ba18a63274a94ff3a77126a887", 4039,
                 role="gt", var="Botswana_gt", mirror="Botswana_gt.mat"),  # fmt: skip
        ),
        aliases=("bw", "okavango"),
        citation=_HAM_2005 + " " + _GIC,
        homepage=_EHU_HOME,
    ),
    DatasetInfo(
        name="houston2013",
        title="Houston 2013",
        sensor="ITRES CASI-1500",
        shape=(349, 1905, 144),
        class_names=(
            "Healthy grass", "Stressed grass", "Synthetic grass", "Trees", "Soil", "Water", "Residential",
            "Commercial", "Road", "Highway", "Railway", "Parking Lot 1", "Parking Lot 2", "Tennis Court",
            "Running Track",
        ),  # fmt: skip
        class_colors=_spy(15),
        class_ids=None,
        water_bands=None,
        water_bands_of=None,
        aux=("lidar", "msi"),  # the contest's LiDAR DSM; HSIseg Table 1 uses an 8-band MSI
        files=(
            # The cube is distributed as GeoTIFF inside the contest archive (registration page) and as
            # houston.mat in mirrors split into parts: no single-file address to download.
            RemoteFile("houston.mat", None, None, None, "cube", "houston"),
            RemoteFile("houston_gt.mat", f"{_MHAUT}/houston_gt.mat",
                       "ebe2438dcc6526bcbb63b5b98009f88de2b8c4a40b5d4c2b2bcd91808aa4e76f", 1329968,
                       "train_map", "houston_gt_tr"),  # fmt: skip
            RemoteFile("houston_gt.mat", f"{_MHAUT}/houston_gt.mat",
                       "ebe2438dcc6526bcbb63b5b98009f88de2b8c4a40b5d4c2b2bcd91808aa4e76f", 1329968,
                       "test_map", "houston_gt_te"),  # fmt: skip
        ),
        aliases=("houston", "hu", "uh", "houston13", "dfc2013"),
        citation=(
            "Debes, C. et al. (2014). Hyperspectral and LiDAR data fusion: outcome of the 2013 GRSS "
            "Data Fusion Contest. IEEE JSTARS 7(6), 2405-2418."
        ),
        homepage="https://machinelearning.ee.uh.edu/?page_id=459",
        notes="IEEE GRSS Data Fusion Contest 2013. Standard split: 2832 training / 12197 test pixels (houston_gt.mat).",
    ),
    DatasetInfo(
        name="longkou",
        title="WHU-Hi-LongKou",
        sensor="Headwall Nano-Hyperspec (UAV)",
        shape=(550, 400, 270),
        class_names=(
            "Corn", "Cotton", "Sesame", "Broad-leaf soybean", "Narrow-leaf soybean", "Rice", "Water",
            "Roads and houses", "Mixed weed",
        ),  # fmt: skip
        class_colors=_spy(9),
        class_ids=None,
        water_bands=None,  # 400-1000 nm: no water-absorption bands
        water_bands_of=None,
        aux=(),
        files=(
            RemoteFile("WHU_Hi_LongKou.mat", None, None, None, "cube", "WHU_Hi_LongKou"),
            RemoteFile("WHU_Hi_LongKou_gt.mat", None, None, None, "gt", "WHU_Hi_LongKou_gt"),
        ),
        aliases=("whu_hi_longkou", "whu_lk", "lk"),
        citation=(
            "Zhong, Y. et al. (2020). WHU-Hi: UAV-borne hyperspectral with high spatial resolution (H2) "
            "benchmark datasets and classifier for precise crop identification based on deep "
            "convolutional neural network with CRF. Remote Sensing of Environment 250, 112012."
        ),
        homepage="http://rsidea.whu.edu.cn/resource_WHUHi_sharing.htm",
    ),
    DatasetInfo(
        name="trento",
        title="Trento",
        sensor="AISA Eagle + Optech ALTM 3100EA LiDAR",
        shape=(166, 600, 63),
        class_names=("Apple trees", "Buildings", "Ground", "Woods", "Vineyard", "Roads"),
        class_colors=_spy(6),
        class_ids=None,
        water_bands=None,  # 400-990 nm
        water_bands_of=None,
        aux=("lidar",),
        files=(
            RemoteFile("Italy_hsi.mat", f"{_TRENTO}/Italy_hsi.mat", None, None, "cube", "data"),
            RemoteFile("allgrd.mat", f"{_TRENTO}/allgrd.mat",
                       "7e3fb2a2ea22c2661dfc768db3cb93c9643b324e7e64fadedfa57f5edbf1818f", 3235,
                       "gt", "mask_test"),  # fmt: skip
            RemoteFile("Italy_lidar.mat", f"{_TRENTO}/Italy_lidar.mat",
                       "a04dc90368d6a7b4f9d3936024ba9fef4105456c090daa14fff31b8b79e94ab1", 404109,
                       "aux", "data"),  # fmt: skip
        ),
        aliases=("trento_hsi_lidar",),
        citation=(
            "Rasti, B., Ghamisi, P., Gloaguen, R. (2017). Hyperspectral and LiDAR fusion using extinction "
            "profiles and total variation component analysis. IEEE TGRS 55(7), 3997-4007."
        ),
        homepage="https://github.com/tyust-dayu/Trento",
        notes="Italy_lidar.mat holds two LiDAR rasters.",
    ),
    DatasetInfo(
        name="muufl",
        title="MUUFL Gulfport",
        sensor="ITRES CASI-1500 + Optech Gemini LiDAR",
        shape=(325, 220, 64),
        class_names=(
            "Trees", "Mostly grass", "Mixed ground surface", "Dirt and sand", "Road", "Water",
            "Building shadow", "Buildings", "Sidewalk", "Yellow curb", "Cloth panels",
        ),  # fmt: skip
        class_colors=_spy(11),
        class_ids=None,
        water_bands="1-4,69-72",  # the first and last four (noisy) bands of 72 are not distributed
        water_bands_of=72,
        aux=("lidar",),
        files=(
            RemoteFile("muufl_gulfport_campus_1_hsi_220_label.mat",
                       f"{_MUUFL}/muufl_gulfport_campus_1_hsi_220_label.mat", None, None, "cube", "hsi.Data"),
            RemoteFile("muufl_gulfport_campus_1_hsi_220_label.mat",
                       f"{_MUUFL}/muufl_gulfport_campus_1_hsi_220_label.mat", None, None, "gt",
                       "hsi.sceneLabels.labels"),
            RemoteFile("muufl_gulfport_campus_1_hsi_220_label.mat",
                       f"{_MUUFL}/muufl_gulfport_campus_1_hsi_220_label.mat", None, None, "aux", "hsi.Lidar[0].z"),
        ),  # fmt: skip
        aliases=("muufl_gulfport", "mg", "gulfport"),
        citation=(
            "Gader, P., Zare, A., Close, R., Aitken, J., Tuell, G. (2013). MUUFL Gulfport hyperspectral "
            "and LiDAR airborne data set. Technical Report REP-2013-570, University of Florida. "
            "Du, X., Zare, A. (2017). Scene label ground truth map for MUUFL Gulfport data set. "
            "Technical Report 20170417, University of Florida."
        ),
        homepage="https://github.com/GatorSense/MUUFLGulfport",
        notes=(
            "One MATLAB struct: cube hsi.Data, labels hsi.sceneLabels.labels (-1 = unlabelled), "
            "LiDAR hsi.Lidar[0].z (two rasters)."
        ),
    ),
    DatasetInfo(
        name="augsburg",
        title="Augsburg",
        sensor="HySpex + Sentinel-1 SAR",
        shape=(332, 485, 180),  # HSIseg Table 1 lists 80 bands; the public HS-SAR release has 180
        class_names=(
            "Forest", "Residential area", "Industrial area", "Low plants", "Allotment", "Commercial area",
            "Water",
        ),  # fmt: skip
        class_colors=_spy(7),
        class_ids=None,
        water_bands=None,
        water_bands_of=None,
        aux=("sar",),  # HSIseg Table 1: SAR (4 bands)
        files=(
            RemoteFile("augsburg_hsi.mat", None, None, None, "cube", "augsburg_hsi"),
            RemoteFile("augsburg_gt.mat", None, None, None, "gt", "augsburg_gt"),
            RemoteFile("augsburg_sar.mat", None, None, None, "aux", "augsburg_sar"),
        ),
        aliases=("ag",),
        citation=(
            "Hong, D., Hu, J., Yao, J., Chanussot, J., Zhu, X. X. (2021). Multimodal remote sensing "
            "benchmark datasets for land cover classification with a shared and specific feature "
            "learning model. ISPRS J. Photogramm. Remote Sens. 178, 68-80."
        ),
        homepage="https://mediatum.ub.tum.de/1657312",
    ),
)


def _key(text: str) -> str:
    """Case, separators and spaces do not matter: 'Indian-Pines' == 'indian_pines'."""
    return re.sub(r"[^0-9a-z]", "", text.lower())


def _stem_key(stem: str) -> str:
    """A file stem as a lookup key: benchmark suffixes dropped (X_corrected_gt -> X)."""
    stem = stem.lower()
    while True:
        shorter = re.sub(r"[_\-\s]*(corrected|gt)$", "", stem)
        if shorter == stem or not shorter:
            return _key(stem)
        stem = shorter


_BY_KEY: dict[str, DatasetInfo] = {}
for _info in _DATASETS:
    for _alias in (_info.name, *_info.aliases):
        _BY_KEY[_key(_alias)] = _info

# identify(): names, aliases and the stems of every registered file.
_BY_STEM: dict[str, DatasetInfo] = dict(_BY_KEY)
for _info in _DATASETS:
    for _file in _info.files:
        _BY_STEM[_stem_key(Path(_file.name).stem)] = _info


def list_datasets() -> list[DatasetInfo]:
    return list(_DATASETS)


def get_dataset(name: str) -> DatasetInfo:
    """Look a scene up by name or alias (case and separators ignored)."""
    info = _BY_KEY.get(_key(name))
    if info is None:
        raise HsiError(
            f"unknown dataset {name!r}; known: {', '.join(d.name for d in _DATASETS)}",
            hint="`hsi datasets` lists the known scenes with their aliases",
        )
    return info


def identify(source: Path, shape: tuple[int, ...]) -> DatasetInfo | None:
    """The known scene a file holds: its name (stem, suffixes like _corrected ignored) names a
    registered scene or file, and its height and width are that scene's."""
    info = _BY_STEM.get(_stem_key(Path(source).stem))
    if info is None or tuple(shape[:2]) != info.shape[:2]:
        return None
    return info


def data_dir() -> Path | None:
    """`$HSI_DATA_DIR`: a folder of scenes looked in before anything is downloaded."""
    value = os.environ.get("HSI_DATA_DIR", "").strip()
    return Path(value).expanduser() if value else None


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _find_in(folder: Path, name: str) -> Path | None:
    """`folder/name`, or a case-insensitive match (salinas_gt.mat for Salinas_gt.mat)."""
    exact = folder / name
    if exact.is_file():
        return exact
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return None
    lowered = name.lower()
    matches = sorted(e.path for e in entries if e.name.lower() == lowered and e.is_file())
    return Path(matches[0]) if matches else None


def _candidate_folders(info: DatasetInfo, root: Path) -> list[Path]:
    """root, root/NAME, then every other folder one level down (sorted, so the order is fixed)."""
    folders = [root, root / info.name]
    try:
        subfolders = sorted(Path(e.path) for e in os.scandir(root) if e.is_dir())
    except OSError:
        return folders
    return folders + [f for f in subfolders if f not in folders]


def receipt_sha256(folder: Path, name: str) -> str | None:
    """The sha256 `hsi fetch` saw when it downloaded `name` into `folder`, if it did."""
    try:
        receipt = json.loads((folder / RECEIPT_NAME).read_text())
        return receipt["files"][name]["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def verify_local(file: RemoteFile, path: Path) -> None:
    """Raise unless `path` has the registry's (or the fetch receipt's) size and sha256."""
    expected = file.sha256 or receipt_sha256(path.parent, file.name)
    size = path.stat().st_size
    if file.size is not None and size != file.size:
        raise HsiError(
            f"{path} has {size} bytes, the registry expects {file.size} for {file.name}",
            hint="the file is truncated or another version; delete it and rerun `hsi fetch`",
        )
    if expected is not None:
        seen = sha256_file(path)
        if seen != expected:
            raise HsiError(
                f"{path} has sha256 {seen}, expected {expected} for {file.name}",
                hint="the file is corrupt or another version; delete it and rerun `hsi fetch`",
            )


def locate(info: DatasetInfo, file: RemoteFile, roots: list[Path], verify: bool = True) -> Path | None:
    """The first copy of `file` under `roots` (also one folder down), verified when asked."""
    for root in roots:
        if not root.is_dir():
            continue
        for folder in _candidate_folders(info, root):
            path = _find_in(folder, file.name)
            if path is not None:
                if verify:
                    verify_local(file, path)
                return path.absolute()
    return None


def find_local(info: DatasetInfo, roots: list[Path], verify: bool = True) -> dict[str, Path] | None:
    """Every file of the scene under `roots` ({file name: path}), or None if one is missing.

    A file found with another size or checksum than recorded is an error, not a miss.
    """
    found: dict[str, Path] = {}
    for file in info.unique_files():
        path = locate(info, file, roots, verify)
        if path is None:
            return None
        found[file.name] = path
    return found
