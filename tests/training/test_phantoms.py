"""Synthetic chest-CT phantoms: geometry round trip through DICOM, SEG validity, ground truth.

Phantoms here are small (96-192 matrix, a few dozen slices) so the module runs in seconds.
The CT series is read back with pydicom alone (sorted along the slice normal, affine rebuilt from
ImagePositionPatient / ImageOrientationPatient / PixelSpacing, PS3.3 C.7.6.2.1.1), so a
convention error on the writing side cannot cancel out against the same error on the reading side.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
import pydicom
import pytest
from numpy.typing import NDArray
from pydicom.dataset import Dataset
from scipy import ndimage

from preread.domain import NoduleType, Vec3
from tests.dicom_tools import dciodvfy
from training import phantoms
from training.nodules import random_shape
from training.parenchyma import draw_emphysema, draw_fissures_slice, draw_scars
from training.phantom_dicom import StudyFiles, write_phantom_study, write_phantoms
from training.phantoms import (
    GENERATOR_VERSION,
    NoduleSpec,
    PatientPosition,
    Phantom,
    ProfileName,
    generate_phantom,
    lung_mask,
)
from training.profiles import get_profile
from training.raster import AxisGrid

SEED = 7
MATRIX, SLICES = 96, 48


def read_series(ct_dir: Path) -> tuple[NDArray[np.float64], NDArray[np.float64], list[Dataset]]:
    """HU volume (k, j, i) and the (k, j, i, 1) -> LPS affine, from pydicom alone."""
    dss: list[Dataset] = [pydicom.dcmread(p) for p in sorted(ct_dir.glob("*.dcm"))]
    iop = np.asarray(dss[0].ImageOrientationPatient, dtype=float)
    row, col = iop[:3], iop[3:]
    normal = np.cross(row, col)
    dss.sort(key=lambda d: float(np.dot(np.asarray(d.ImagePositionPatient, float), normal)))
    ipp = np.asarray([d.ImagePositionPatient for d in dss], dtype=float)
    vol = np.stack([d.pixel_array * float(d.RescaleSlope) + float(d.RescaleIntercept) for d in dss])
    row_spacing, col_spacing = (float(v) for v in dss[0].PixelSpacing)
    affine = np.eye(4)
    affine[:3, 0] = (ipp[-1] - ipp[0]) / (len(dss) - 1)
    affine[:3, 1] = col * row_spacing
    affine[:3, 2] = row * col_spacing
    affine[:3, 3] = ipp[0]
    return vol, affine, dss


def lung_points(ph: Phantom, count: int) -> list[Vec3]:
    """The ``count`` lung points farthest from anything else, in different places (LPS)."""
    g = ph.volume.geometry
    padded = np.pad(lung_mask(ph), 1)  # the edges of the scan count as "not lung"
    dist = ndimage.distance_transform_edt(padded, sampling=g.spacing)[1:-1, 1:-1, 1:-1]
    out: list[Vec3] = []
    for _ in range(count):
        k, j, i = np.unravel_index(int(np.argmax(dist)), dist.shape)
        p = g.index_to_lps([k, j, i])
        out.append((float(p[0]), float(p[1]), float(p[2])))
        kk, jj, ii = np.ogrid[: dist.shape[0], : dist.shape[1], : dist.shape[2]]
        pts = g.index_to_lps(np.stack(np.broadcast_arrays(kk, jj, ii), -1))
        dist[np.linalg.norm(pts - p, axis=-1) < 40.0] = 0.0
    return out


@pytest.fixture(scope="module")
def base() -> Phantom:
    return generate_phantom(
        SEED, nodules=[], patient_position="HFS", matrix=MATRIX, max_slices=SLICES
    )


@pytest.fixture(scope="module")
def spots(base: Phantom) -> list[Vec3]:
    return lung_points(base, 2)


@pytest.fixture(scope="module")
def two_nodules(spots: list[Vec3]) -> Phantom:
    specs = [NoduleSpec(spots[0], 10.0, "solid"), NoduleSpec(spots[1], 8.0, "ground-glass")]
    return generate_phantom(SEED, nodules=specs, matrix=MATRIX, max_slices=SLICES)


@pytest.fixture(scope="module")
def study(two_nodules: Phantom, tmp_path_factory: pytest.TempPathFactory) -> StudyFiles:
    return write_phantom_study(two_nodules, tmp_path_factory.mktemp("study"))


# -- 1. geometry round trip ------------------------------------------------------------------


@pytest.mark.parametrize("position", ["HFS", "FFS"])
def test_nodule_found_at_its_lps_position_after_dicom_round_trip(
    position: PatientPosition, spots: list[Vec3], tmp_path: Path
) -> None:
    centre = spots[0]
    with_nodule = generate_phantom(
        SEED,
        nodules=[NoduleSpec(centre, 14.0, "solid")],
        patient_position=position,
        matrix=MATRIX,
        max_slices=SLICES,
    )
    without = generate_phantom(
        SEED, nodules=[], patient_position=position, matrix=MATRIX, max_slices=SLICES
    )
    files = write_phantom_study(with_nodule, tmp_path / "a")
    files0 = write_phantom_study(without, tmp_path / "b")
    vol, affine, dss = read_series(files.ct_dir)
    vol0, affine0, _ = read_series(files0.ct_dir)
    np.testing.assert_allclose(affine, affine0)

    expected_iop = [1, 0, 0, 0, 1, 0] if position == "HFS" else [-1, 0, 0, 0, 1, 0]
    assert [float(v) for v in dss[0].ImageOrientationPatient] == expected_iop
    assert dss[0].PatientPosition == position
    # acquisition order: instance 1 first along the normal (towards the feet for FFS)
    instances = [int(d.InstanceNumber) for d in dss]
    assert instances == sorted(instances)
    z = [float(d.ImagePositionPatient[2]) for d in dss]
    assert (np.diff(z) > 0).all() if position == "HFS" else (np.diff(z) < 0).all()

    # the nodule is what differs (same seed, same noise); its centroid is at the truth position
    blob = (vol - vol0) > 100.0
    assert blob.sum() > 5
    centroid = np.argwhere(blob).mean(axis=0)
    found = affine[:3, :3] @ centroid + affine[:3, 3]
    err_index = np.linalg.solve(affine[:3, :3], found - np.asarray(centre))
    assert np.abs(err_index).max() < 1.0, (found, centre)
    # and the voxel nearest to the truth centre is nodule-bright
    near = np.rint(np.linalg.solve(affine[:3, :3], np.asarray(centre) - affine[:3, 3])).astype(int)
    assert vol[tuple(near)] > -300.0


def test_patient_position_does_not_move_the_patient() -> None:
    hfs = generate_phantom(SEED, patient_position="HFS", matrix=64, max_slices=24)
    ffs = generate_phantom(SEED, patient_position="FFS", matrix=64, max_slices=24)
    np.testing.assert_array_equal(hfs.volume.array[::-1, :, ::-1], ffs.volume.array)
    np.testing.assert_array_equal(hfs.label[::-1, :, ::-1], ffs.label)
    assert hfs.nodules == ffs.nodules
    n = np.asarray(hfs.volume.geometry.shape) - 1
    corner = hfs.volume.geometry.index_to_lps([n[0], 0, n[2]])
    np.testing.assert_allclose(ffs.volume.geometry.index_to_lps([0, 0, 0]), corner, atol=1e-9)


# -- 2. standards -------------------------------------------------------------------------------


def test_seg_and_ct_pass_dciodvfy(study: StudyFiles) -> None:
    assert study.seg_path is not None
    for path in (study.seg_path, next(study.ct_dir.glob("CT*.dcm"))):
        errors = [line for line in dciodvfy(path) if "Error" in line]
        assert errors == [], f"{path.name}: {errors}"


def test_seg_reads_back_and_matches_the_label_map(study: StudyFiles, two_nodules: Phantom) -> None:
    assert study.seg_path is not None
    seg = hd.seg.segread(study.seg_path)
    ct0 = pydicom.dcmread(next(study.ct_dir.glob("CT*.dcm")), stop_before_pixels=True)
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == study.series_instance_uid
    assert seg.StudyInstanceUID == study.study_instance_uid == ct0.StudyInstanceUID
    assert seg.FrameOfReferenceUID == ct0.FrameOfReferenceUID
    assert seg.SegmentationType == "BINARY"
    assert len(seg.SegmentSequence) == len(two_nodules.nodules) == 2
    frames = seg.pixel_array.reshape(-1, seg.Rows, seg.Columns)
    for item in seg.SegmentSequence:
        n = int(item.SegmentNumber)
        assert item.SegmentedPropertyTypeCodeSequence[0].CodeValue == "27925004"
        assert item.SegmentedPropertyCategoryCodeSequence[0].CodeValue == "49755003"
        assert item.TrackingID == f"nodule-{n}"
        in_seg = sum(
            int(frames[f].sum())
            for f, fg in enumerate(seg.PerFrameFunctionalGroupsSequence)
            if int(fg.SegmentIdentificationSequence[0].ReferencedSegmentNumber) == n
        )
        assert in_seg == int((two_nodules.label == n).sum()) > 0


# -- 3. determinism, contents, HU -----------------------------------------------------------


def test_same_seed_same_phantom_and_files(
    two_nodules: Phantom, study: StudyFiles, spots: list[Vec3], tmp_path: Path
) -> None:
    specs = [NoduleSpec(spots[0], 10.0, "solid"), NoduleSpec(spots[1], 8.0, "ground-glass")]
    again = generate_phantom(SEED, nodules=specs, matrix=MATRIX, max_slices=SLICES)
    np.testing.assert_array_equal(again.volume.array, two_nodules.volume.array)
    np.testing.assert_array_equal(again.label, two_nodules.label)
    assert again.nodules == two_nodules.nodules
    files = write_phantom_study(again, tmp_path)
    assert (files.study_instance_uid, files.series_instance_uid) == (
        study.study_instance_uid,
        study.series_instance_uid,
    )
    for path in [*sorted(study.ct_dir.glob("*.dcm"))[:3], study.seg_path, study.truth_path]:
        assert path is not None
        twin = files.study_dir / path.relative_to(study.study_dir)
        assert twin.read_bytes() == path.read_bytes(), path.name


def test_different_seed_differs(base: Phantom, tmp_path: Path) -> None:
    other = generate_phantom(
        SEED + 1, nodules=[], patient_position="HFS", matrix=MATRIX, max_slices=SLICES
    )
    assert other.volume.array.shape != base.volume.array.shape or not np.array_equal(
        other.volume.array, base.volume.array
    )
    a = write_phantom_study(base, tmp_path)
    b = write_phantom_study(other, tmp_path)
    assert a.study_dir != b.study_dir
    assert (
        len(
            {
                a.study_instance_uid,
                b.study_instance_uid,
                a.series_instance_uid,
                b.series_instance_uid,
            }
        )
        == 4
    )


def test_random_phantoms_respect_the_contract() -> None:
    counts, calcified = [], 0
    for seed in range(8):
        ph = generate_phantom(seed, matrix=48)
        g = ph.volume.geometry
        assert ph.profile == "train"
        assert ph.volume.array.dtype == np.float32 and ph.label.dtype == np.uint8
        assert 100 <= g.shape[0] <= 400 and g.shape[1:] == (48, 48)
        assert 0.625 <= g.spacing[0] <= 3.0  # train: 0.625-2.5 mm, and 3 mm for 10 %
        assert 0.55 * 512 / 48 - 1e-3 <= g.spacing[1] <= 0.9 * 512 / 48 + 1e-3
        extent, half = g.spacing[0] * g.shape[0], g.spacing[0] / 2.0
        assert 200.0 - half <= extent <= 320.0 + half or g.shape[0] in (100, 400)
        assert 10.0 <= ph.noise_sd_hu <= 60.0
        assert ph.patient_position in ("HFS", "FFS")
        regular = [n for n in ph.nodules if not n.calcified]
        calc = [n for n in ph.nodules if n.calcified]
        assert 0 <= len(regular) <= 4 and 0 <= len(calc) <= 3
        # labels 1..N for the nodules in the label map, then N+1..N+M for the calcified ones
        assert [n.label for n in ph.nodules] == list(range(1, len(ph.nodules) + 1))
        assert ph.nodules == (*regular, *calc)
        assert set(np.unique(ph.label)) <= set(range(len(regular) + 1))
        lungs = lung_mask(ph)
        for n in ph.nodules:
            assert 3.0 <= n.long_axis_mm <= (10.0 if n.calcified else 30.0)
            assert n.type == "solid" or not n.calcified
            k, j, i = np.rint(g.lps_to_index(n.center_lps_mm)).astype(int)
            assert lungs[k, j, i] or n.attached_to == "pleura"
        counts.append(len(regular))
        calcified += len(calc)
    assert 0 in counts and max(counts) >= 2
    assert calcified >= 1


def test_tissue_hu(base: Phantom) -> None:
    vol = base.volume.array
    assert -880.0 < float(np.median(vol[lung_mask(base)])) < -800.0
    assert vol.max() > 700.0  # cortical bone
    assert float(vol[:, :4, :4].mean()) < -950.0  # air outside the body
    assert vol.min() >= -1024.0 and vol.max() <= 3071.0


def test_noise_level_is_as_stated() -> None:
    ph = generate_phantom(5, matrix=64, max_slices=16)  # 10.6 HU: air is hardly clipped
    corner = ph.volume.array[:, :12, :12]
    assert float(corner.std()) == pytest.approx(ph.noise_sd_hu, rel=0.1)


@pytest.mark.parametrize("kind", ["solid", "part-solid", "ground-glass"])
def test_nodule_hu_by_type(kind: NoduleType, spots: list[Vec3]) -> None:
    ph = generate_phantom(
        SEED,
        nodules=[NoduleSpec(spots[0], 20.0, kind)],
        matrix=192,
        max_slices=48,
        patient_position="HFS",
    )
    g = ph.volume.geometry
    kk, jj, ii = np.nonzero(ph.label == 1)
    r = np.linalg.norm(g.index_to_lps(np.stack([kk, jj, ii], 1)) - np.asarray(spots[0]), axis=1)
    values = ph.volume.array[kk, jj, ii]
    core = float(values[r < 2.5].mean())
    rim = float(values[(r > 8.0) & (r < 9.2)].mean())
    if kind == "solid":  # the rim may overshoot where a sharp kernel enhances the edge
        assert -40.0 < core < 100.0 and -100.0 < rim < 200.0
    elif kind == "ground-glass":
        assert -720.0 < core < -280.0 and -720.0 < rim < -250.0
    else:
        assert -150.0 < core < 100.0 and -720.0 < rim < -250.0


def test_label_volume_matches_truth() -> None:
    checked = 0
    for seed in (4, 6, 7):
        ph = generate_phantom(seed, matrix=192)
        vv = ph.volume.geometry.voxel_volume_mm3
        for n in ph.nodules:
            if n.long_axis_mm < 6.0:
                continue
            rel = abs(int((ph.label == n.label).sum()) * vv - n.volume_mm3) / n.volume_mm3
            assert rel < (0.25 if n.long_axis_mm < 10.0 else 0.08), (seed, n)
            checked += 1
    assert checked >= 4


def test_analytic_volume_of_a_lobulated_nodule() -> None:
    rng = np.random.default_rng(0)
    for kind in ("solid", "part-solid"):
        shape = random_shape(rng, 14.0, kind, None)
        assert shape.long_axis() == pytest.approx(14.0, rel=5e-3)
        axis = np.arange(-9.0, 9.0, 0.2)
        grid = AxisGrid(x=axis, y=axis.copy(), z=axis.copy())
        vol = np.full(grid.shape, -850.0, dtype=np.float32)
        label = np.zeros(grid.shape, dtype=np.uint8)
        shape.draw(vol, label, grid, 1)
        assert label.sum() * 0.2**3 == pytest.approx(shape.volume(), rel=0.02)
        kji = np.argwhere(label == 1).mean(axis=0)
        centroid = axis[0] + 0.2 * kji[::-1]  # (x, y, z)
        np.testing.assert_allclose(centroid, shape.truth(1).center_lps_mm, atol=0.05)


# -- 4. domain randomisation: calcified nodules, parenchyma, profiles ------------------------


def test_calcified_nodule_is_drawn_but_not_labelled(spots: list[Vec3]) -> None:
    specs = [NoduleSpec(spots[0], 8.0, "solid", calcified=True), NoduleSpec(spots[1], 8.0)]
    ph = generate_phantom(SEED, nodules=specs, matrix=192, max_slices=48, patient_position="HFS")
    regular, calc = ph.nodules
    # calcified nodules come after the others, with a label that is not in the label map
    assert (regular.label, regular.calcified) == (1, False)
    assert (calc.label, calc.calcified, calc.type) == (2, True, "solid")
    assert calc.center_lps_mm == spots[0]
    assert set(np.unique(ph.label)) == {0, 1}
    g = ph.volume.geometry
    for n in (calc, regular):
        k, j, i = np.rint(g.lps_to_index(n.center_lps_mm)).astype(int)
        centre = float(np.median(ph.volume.array[k - 1 : k + 2, j - 1 : j + 2, i - 1 : i + 2]))
        assert (centre > 200.0) == n.calcified, (n, centre)
        assert ph.label[k, j, i] == (0 if n.calcified else n.label)


def test_profiles_do_not_overlap() -> None:
    """Robustness scanners lie outside the train ranges: thicker, noisier, other kernels."""
    train = [generate_phantom(s, matrix=32, max_slices=4) for s in range(12)]
    robust = [generate_phantom(s, matrix=32, max_slices=4, profile="robustness") for s in range(6)]
    for ph in train:
        sc = ph.scanner
        assert sc is not None and ph.profile == "train"
        assert 0.625 <= sc.thickness <= 3.0 and 10.0 <= sc.noise_sd <= 60.0
        assert -0.12 <= sc.edge_w <= 0.25 and sc.passes == 1
        assert sc.nps_peak is None or 0.10 <= sc.nps_peak <= 0.40
    assert sum(ph.volume.geometry.spacing[0] <= 2.5 for ph in train) >= 9  # most within 2.5 mm
    assert {ph.scanner.kernel for ph in train if ph.scanner} == {"white", "smooth", "sharp"}
    for ph in robust:
        sc = ph.scanner
        assert sc is not None and ph.profile == "robustness"
        assert ph.volume.geometry.spacing[0] == sc.thickness
        assert 3.75 <= sc.thickness <= 5.0 and 65.0 <= sc.noise_sd <= 90.0
        assert ph.noise_sd_hu == sc.noise_sd and sc.ssp_w > 0.15
        assert sc.edge_w < -0.12 or sc.edge_w > 0.25
        assert sc.nps_peak is not None and not 0.10 <= sc.nps_peak <= 0.40
        assert ph.parenchyma is not None and len(ph.parenchyma.emphysema) >= 60


def test_the_wide_profile_stops_short_of_the_robustness_ranges() -> None:
    """``wide`` (mining for the false-positive classifier) widens ``train`` on the scanner axes
    and emphysema, and every one of its ranges stays below or beside the robustness ones, so a
    robustness set is still outside everything a model is trained or tuned on."""
    wide, robust = get_profile("wide"), get_profile("robustness")

    def apart(a: tuple[float, float], b: tuple[float, float]) -> bool:
        return a[1] < b[0] or b[1] < a[0]

    assert max(wide.thicknesses) < min(robust.thicknesses)
    assert max(hi for _, hi in wide.noise_bands) < min(lo for lo, _ in robust.noise_bands)
    assert wide.ssp_w[1] < robust.ssp_w[0]
    assert wide.emphysema_count[1] < robust.emphysema_count[0]
    for k in wide.kernels:
        for r in robust.kernels:
            assert k.name != r.name
            assert apart(k.edge_w, r.edge_w) or k.passes != r.passes, (k, r)
            assert k.nps_peak is None or r.nps_peak is None or apart(k.nps_peak, r.nps_peak)
    assert set(get_profile("train").kernels) < set(wide.kernels)
    phantoms = [generate_phantom(s, matrix=32, max_slices=4, profile="wide") for s in range(8)]
    assert all(p.scanner is not None and p.profile == "wide" for p in phantoms)
    assert max(p.scanner.noise_sd for p in phantoms if p.scanner) < 65.0
    assert len({p.scanner.kernel for p in phantoms if p.scanner}) >= 3


def test_robustness_profile_is_deterministic_and_its_own_patient() -> None:
    a = generate_phantom(3, matrix=48, max_slices=12, profile="robustness")
    b = generate_phantom(3, matrix=48, max_slices=12, profile="robustness")
    train = generate_phantom(3, matrix=48, max_slices=12)
    np.testing.assert_array_equal(a.volume.array, b.volume.array)
    np.testing.assert_array_equal(a.label, b.label)
    assert a.nodules == b.nodules and a.scanner == b.scanner
    assert a.volume.geometry.spacing != train.volume.geometry.spacing
    with pytest.raises(ValueError, match="profile"):
        generate_phantom(3, matrix=48, max_slices=4, profile="test")  # type: ignore[arg-type]


def test_parenchyma_is_drawn_inside_the_lungs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Emphysema, scars and fissures change only lung voxels, and every kind shows up."""
    changed: dict[str, int] = {"emphysema": 0, "scars": 0, "fissures": 0}
    outside: dict[str, int] = dict.fromkeys(changed, 0)
    whole: dict[str, NDArray[np.bool_]] = {}

    def spy(name: str, fn: Callable[..., None], img_arg: int, mask_arg: int) -> Callable[..., None]:
        def wrapped(*args: Any) -> None:
            before = np.array(args[img_arg], copy=True)
            fn(*args)
            diff = args[img_arg] != before
            changed[name] += int(diff.sum())
            outside[name] += int((diff & ~args[mask_arg]).sum())
            if name != "fissures":
                whole[name] = whole.get(name, np.zeros(diff.shape, bool)) | diff

        return wrapped

    monkeypatch.setattr(phantoms, "draw_emphysema", spy("emphysema", draw_emphysema, 0, 1))
    monkeypatch.setattr(phantoms, "draw_scars", spy("scars", draw_scars, 0, 1))
    monkeypatch.setattr(phantoms, "draw_fissures_slice", spy("fissures", draw_fissures_slice, 0, 1))
    cases: list[tuple[int, ProfileName]] = [(1, "robustness"), (2, "train"), (4, "train")]
    for seed, profile in cases:
        whole.clear()
        ph = generate_phantom(
            seed, matrix=64, max_slices=40, patient_position="HFS", profile=profile
        )
        lungs = lung_mask(ph)
        for name, diff in whole.items():
            assert not (diff & ~lungs).any(), (seed, name)
        par = ph.parenchyma
        assert par is not None
        centres = [b.centre for b in par.emphysema] + [p.centre for p in par.scars]
        assert lungs_at(ph, np.asarray(centres).reshape(-1, 3)).all()
        for blob in par.emphysema:
            assert -1000.0 <= blob.hu <= -950.0
        for plate in par.scars:
            assert -100.0 <= plate.hu <= 40.0 and 0.75 <= plate.half_thickness <= 2.5
        for f in par.fissures:
            assert -600.0 <= f.hu <= -300.0 and f.thickness <= 1.3
    assert all(changed[k] > 0 for k in changed), changed
    assert outside == dict.fromkeys(changed, 0), outside


def lungs_at(ph: Phantom, pts: NDArray[np.float64]) -> NDArray[np.bool_]:
    """Whether the analytic lungs of ``ph`` contain the points ``pts`` (N, 3) LPS."""
    _, anat, _, _ = phantoms._patient(ph.seed, ph.profile)
    return np.asarray(anat.in_lung(pts[:, 0], pts[:, 1], pts[:, 2]), dtype=bool)


# -- 5. truth.json and the batch writer -------------------------------------------------------


def test_truth_json(study: StudyFiles, two_nodules: Phantom, spots: list[Vec3]) -> None:
    truth = json.loads(study.truth_path.read_text())
    g = two_nodules.volume.geometry
    assert truth["generator_version"] == GENERATOR_VERSION
    assert truth["seed"] == SEED
    assert truth["study_instance_uid"] == study.study_instance_uid
    assert truth["series_instance_uid"] == study.series_instance_uid
    assert truth["patient_position"] == two_nodules.patient_position
    assert truth["pixel_spacing"] == [g.spacing[1], g.spacing[2]]
    assert truth["slice_thickness"] == g.spacing[0]
    assert truth["n_slices"] == g.shape[0] == len(list(study.ct_dir.glob("*.dcm")))
    assert truth["noise_sd_hu"] == two_nodules.noise_sd_hu
    assert truth["coordinate_system"] == "DICOM patient LPS, mm"
    assert [n["label"] for n in truth["nodules"]] == [1, 2]
    for item, n in zip(truth["nodules"], two_nodules.nodules, strict=True):
        assert item["center_lps_mm"] == list(n.center_lps_mm)
        assert item["long_axis_mm"] == n.long_axis_mm
        assert item["volume_mm3"] == n.volume_mm3
        assert item["type"] == n.type and item["attached_to"] == n.attached_to
        assert item["calcified"] is n.calcified is False
        assert item["segment_number"] == n.label
    sphere = truth["nodules"][0]
    assert sphere["center_lps_mm"] == list(spots[0])
    assert sphere["long_axis_mm"] == pytest.approx(10.0, rel=1e-3)
    assert sphere["volume_mm3"] == pytest.approx(np.pi / 6 * 10.0**3, rel=1e-3)


def test_write_phantoms(tmp_path: Path) -> None:
    calls: list[int] = []
    studies = write_phantoms(tmp_path, 2, 11, matrix=32, max_slices=8, progress=calls.append)
    assert calls == [1, 1]
    assert [s.study_dir.name for s in studies] == ["PHANTOM-000011", "PHANTOM-000012"]
    for s in studies:
        truth = json.loads(s.truth_path.read_text())
        # the SEG holds the nodules of the label map: none when all are calcified (or absent)
        assert (s.seg_path is None) == all(n["calcified"] for n in truth["nodules"])
        assert len(list(s.ct_dir.glob("*.dcm"))) == truth["n_slices"] <= 8
