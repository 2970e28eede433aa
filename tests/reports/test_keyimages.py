"""Key images (Secondary Capture per finding) and the Key Object Selection, validated with
dciodvfy, rendered with dcmtk's dcmj2pnm and compared with the SEG built from the same labels.

Source images: the synthetic chest CT of ``test_sr_seg`` (training.phantom_dicom, 96 × 96,
32 slices, feet first) with its two spherical nodules; the phantom's label map is the "model's".
The key images enlarge the 96-pixel slices by 6 (to 576 pixels, so that the text is legible),
which the contour test accounts for; ``test_render_*`` cover a 512-pixel slice (no enlargement)
and an anisotropic plane (what the review page's coronal/sagittal views give).
"""

from __future__ import annotations

import random
import subprocess
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import highdicom as hd
import numpy as np
import numpy.typing as npt
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import Dataset

from dicom_gateway.selection import is_preread_series
from dicom_gateway.volume import assemble_volume
from preread.domain import Finding, ModelRef, PreReadResult
from preread.reports import (
    EncodedSeries,
    KeyImageSeries,
    ReportError,
    build_key_images,
    build_kos,
    build_seg,
)
from preread.reports.keyimages import NOT_FOR_DIAGNOSIS, key_image_lines
from preread.reports.render import (
    BAND_RGB,
    CONTOUR_RGB,
    LUNG_WINDOW,
    Window,
    boundary,
    render_key_image,
)
from tests.dicom_tools import dciodvfy, installed_tool
from tests.reports.truth import truth_findings
from training.phantom_dicom import write_phantom_study
from training.phantoms import NoduleSpec, generate_phantom

MODEL = ModelRef(id="lung-nodule", version="2.1.0", name="PreRead Lung Nodule", sha256="ab" * 32)
CREATED = datetime(2024, 5, 1, 12, 30, 15)
NODULES = [  # LPS centres inside the lungs of phantom seed 4 (as in test_sr_seg)
    NoduleSpec(center_lps_mm=(99.7, -15.5, -145.6), diameter_mm=14.0),
    NoduleSpec(center_lps_mm=(-108.4, 46.2, -136.7), diameter_mm=10.0),
]
TYPED = {  # what a 2.x model adds, by label
    1: {"nodule_type": "part-solid", "axial_long_axis_mm": 13.46, "short_axis_mm": 12.1,
        "solid_component_long_axis_mm": 5.25},
    2: {"nodule_type": "solid", "axial_long_axis_mm": 9.8, "short_axis_mm": 9.1},
}  # fmt: skip


class Study:
    """The phantom CT (headers only, as the pipeline holds them), HU volume, labels, result,
    and the SEG, key images and KOS of the result."""

    def __init__(self, root: Path) -> None:
        phantom = generate_phantom(4, matrix=96, max_slices=32, nodules=NODULES)
        files = write_phantom_study(phantom, root / "ct")
        self.by_k: list[Dataset] = [pydicom.dcmread(p) for p in sorted(files.ct_dir.glob("CT*"))]
        shuffled = self.by_k[:]
        random.Random(1).shuffle(shuffled)
        volume = assemble_volume(shuffled, release_pixel_data=True)  # the pipeline's way
        self.sources = shuffled  # pixel data released: the encoders must not need it
        self.hu = volume.array
        self.labels: npt.NDArray[np.uint8] = phantom.label.astype(np.uint8)
        first = self.by_k[0]
        self.result = PreReadResult(
            study_instance_uid=str(first.StudyInstanceUID),
            series_instance_uid=str(first.SeriesInstanceUID),
            frame_of_reference_uid=str(first.FrameOfReferenceUID),
            model=MODEL,
            provider="CPUExecutionProvider",
            findings=truth_findings(
                phantom.nodules,
                self.labels,
                probability=lambda _: 0.9,
                mean_hu=-35.0,
                extra=TYPED,
            ),
            created=CREATED,
        )
        seg = build_seg(self.result, self.sources, self.labels, uid_seed="s")
        images = build_key_images(self.result, self.sources, self.labels, self.hu, uid_seed="s")
        kos = build_kos(self.result, self.sources, self.labels, uid_seed="s")
        assert seg is not None and images is not None and kos is not None
        self.seg: EncodedSeries = seg
        self.images: KeyImageSeries = images
        self.kos: EncodedSeries = kos
        self.root = root

    def write(self, ds: Dataset, name: str) -> Path:
        path = self.root / f"{name}.dcm"
        ds.save_as(path, enforce_file_format=True)
        return path

    def centre_slice(self, finding: Finding) -> int:
        """The phantom slice nearest the finding's centre (phantom slice k = instance k + 1)."""
        z = np.array([float(ds.ImagePositionPatient[2]) for ds in self.by_k])
        return int(np.abs(z - finding.center_lps_mm[2]).argmin())


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Study:
    return Study(tmp_path_factory.mktemp("keyimages"))


def _png(study: Study, ds: Dataset, name: str) -> npt.NDArray[np.uint8]:
    """The key image as dcmj2pnm renders it (PNG, RGB)."""
    png = study.root / f"{name}.png"
    subprocess.run(
        [installed_tool("dcmj2pnm"), "--write-png", str(study.write(ds, name)), str(png)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    with Image.open(png) as image:
        return np.asarray(image.convert("RGB"), dtype=np.uint8)


# --- validators ------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["sc-1", "sc-2", "kos"])
def test_dciodvfy_reports_no_error_and_no_warning(study: Study, which: str) -> None:
    ds = study.kos.dataset if which == "kos" else study.images.datasets[int(which[-1]) - 1]
    lines = dciodvfy(study.write(ds, which))
    assert lines[0] in ("SCImage", "KeyObjectSelectionDocument"), lines
    assert not [line for line in lines if "Error" in line or "Warning" in line], lines


# --- the Secondary Capture --------------------------------------------------------------------


def test_one_rgb_key_image_per_finding_with_burned_in_annotation(study: Study) -> None:
    images = study.images
    assert images.finding_labels == (1, 2)
    assert len(set(images.sop_instance_uids)) == 2
    for number, ds in enumerate(images.datasets, start=1):
        assert ds.SOPClassUID == pydicom.uid.SecondaryCaptureImageStorage
        assert (ds.StudyInstanceUID, ds.SeriesInstanceUID) == (
            study.result.study_instance_uid,
            images.series_instance_uid,
        )
        assert ds.SeriesInstanceUID not in (
            study.seg.series_instance_uid,
            study.kos.series_instance_uid,
        )
        assert ds.InstanceNumber == number
        assert (ds.PhotometricInterpretation, ds.SamplesPerPixel, ds.BitsAllocated) == ("RGB", 3, 8)
        assert ds.BurnedInAnnotation == "YES"
        assert ds.PatientID == study.by_k[0].PatientID
        assert is_preread_series(ds.Modality, ds.SeriesDescription)  # never read as input
        assert NOT_FOR_DIAGNOSIS in ds.ImageComments
        assert list(ds.PatientOrientation) == ["L", "P"]


def test_source_image_is_the_ct_slice_through_the_centre(study: Study) -> None:
    for ds, finding in zip(study.images.datasets, study.result.findings, strict=True):
        (source,) = ds.SourceImageSequence
        expected = study.by_k[study.centre_slice(finding)]
        assert source.ReferencedSOPInstanceUID == expected.SOPInstanceUID
        assert source.ReferencedSOPClassUID == expected.SOPClassUID
        assert source.PurposeOfReferenceCodeSequence[0].CodeValue == "121322"


def test_dcmj2pnm_shows_the_contour_exactly_on_the_seg_boundary(study: Study) -> None:
    """The rendered PNG has the contour colour on exactly the boundary pixels of the SEG's
    segment on the key slice (at the key image's 6x enlargement), and nowhere else; mapped back
    to the CT's pixels, each contour pixel is a boundary pixel of the SEG frame."""
    seg = hd.seg.Segmentation.from_dataset(study.seg.dataset, copy=False)
    for number, ds in enumerate(study.images.datasets, start=1):
        rgb = _png(study, ds, f"sc-{number}")
        assert rgb.shape == (ds.Rows, ds.Columns, 3)
        source_uid = ds.SourceImageSequence[0].ReferencedSOPInstanceUID
        frame = seg.get_pixels_by_source_instance(
            source_sop_instance_uids=[source_uid], segment_numbers=[number]
        )[0, :, :, 0].astype(bool)
        assert frame.any()
        ct_spacing = np.asarray(study.by_k[0].PixelSpacing, dtype=float)
        factor = round(float(ct_spacing[1]) / float(ds.PixelSpacing[1]))
        assert factor == 6  # 96 pixels shown 576 wide
        rows = frame.shape[0] * factor
        expected = boundary(np.kron(frame, np.ones((factor, factor), dtype=bool)))
        contour = np.all(rgb == CONTOUR_RGB, axis=2)
        assert np.array_equal(contour[:rows], expected)
        assert not contour[rows:].any()  # the text band has no contour colour
        back = np.zeros_like(frame)
        back[np.nonzero(contour[:rows])[0] // factor, np.nonzero(contour[:rows])[1] // factor] = (
            True
        )
        assert np.array_equal(back, boundary(frame))  # agreement with the SEG: exact pixels


def test_the_text_is_in_the_band_below_the_image(study: Study) -> None:
    """The band below the CT holds a run of text rows per line (non-background pixels; a long
    line wraps), and the image part is the windowed CT: grey but for the contour."""
    ds = study.images.datasets[0]
    rgb = _png(study, ds, "sc-text")
    rows = 96 * 6
    band = rgb[rows:]
    lit = np.any(band != BAND_RGB, axis=(1, 2))
    runs = int(np.count_nonzero(lit[1:] & ~lit[:-1]) + lit[0])
    lines = key_image_lines(study.result, study.result.findings[0])
    assert lines[-1] == NOT_FOR_DIAGNOSIS
    assert len(lines) <= runs <= 2 * len(lines), (runs, lines)  # a long line wraps
    assert np.count_nonzero(np.any(band != BAND_RGB, axis=2)) > 2000
    image = rgb[:rows]
    grey = np.all(image[..., :1] == image, axis=2)
    assert np.all(grey | np.all(image == CONTOUR_RGB, axis=2))


def test_key_image_text_names_number_type_sizes_volume_and_model(study: Study) -> None:
    first = key_image_lines(study.result, study.result.findings[0])
    assert first == [
        "Nodule 1 (part-solid), left lung - AI finding 1 of 2",
        "Long axis 13.5 mm, short axis 12.1 mm (axial); 3-D long axis "
        f"{study.result.findings[0].long_axis_mm:.1f} mm; solid component 5.2 mm",
        f"Volume {study.result.findings[0].volume_mm3:.0f} mm3, mean -35 HU, probability 90.0%",
        "Model lung-nodule 2.1.0 (PreRead Lung Nodule)",
        "AI-generated, preliminary, not for diagnosis",
    ]
    untyped = replace(study.result.findings[1], nodule_type=None, axial_long_axis_mm=None)
    second = key_image_lines(replace(study.result, findings=(untyped,)), untyped)
    assert second[0] == "Nodule 2, right lung - AI finding 1 of 1"
    assert second[1].endswith("(3-D); short axis not measured")


# --- the Key Object Selection -----------------------------------------------------------------


def test_kos_flags_the_key_slices_as_of_interest_chosen_by_the_ai(study: Study) -> None:
    kos = hd.ko.KeyObjectSelectionDocument.from_dataset(study.kos.dataset)
    assert kos.Modality == "KO" and is_preread_series(kos.Modality, kos.SeriesDescription)
    assert kos.StudyInstanceUID == study.result.study_instance_uid
    assert kos.SeriesInstanceUID not in (
        study.seg.series_instance_uid,
        study.images.series_instance_uid,
    )
    root = kos.content[0]
    assert (
        root.ConceptNameCodeSequence[0].CodeValue,
        root.ConceptNameCodeSequence[0].CodingSchemeDesignator,
    ) == ("113000", "DCM")
    expected = {study.by_k[study.centre_slice(f)].SOPInstanceUID for f in study.result.findings}
    referenced = {
        item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID
        for item in root.ContentSequence
        if item.ValueType == "IMAGE"
    }
    assert referenced == expected and len(expected) == 2
    assert {kos.resolve_reference(uid)[1] for uid in referenced} == {
        study.result.series_instance_uid
    }
    (text,) = [
        item.TextValue
        for item in root.ContentSequence
        if item.ConceptNameCodeSequence[0].CodeValue == "113012"  # Key Object Description
    ]
    assert "Selected by the AI model PreRead Lung Nodule 2.1.0" in text
    assert "not by a radiologist" in text and NOT_FOR_DIAGNOSIS in text
    (device,) = kos.content.get_observer_contexts(
        observer_type=hd.sr.CodedConcept("121007", "DCM", "Device")
    )
    name = device.observer_identifying_attributes.name
    assert name is not None and name.startswith("PreRead Lung Nodule")


# --- no findings, UIDs, bad inputs ------------------------------------------------------------


def test_no_findings_no_key_images_and_no_kos(study: Study) -> None:
    empty = replace(study.result, findings=())
    assert build_key_images(empty, study.sources, study.labels, study.hu) is None
    assert build_kos(empty, study.sources, study.labels) is None


def test_uids_are_deterministic_and_differ_by_seed(study: Study) -> None:
    again = build_key_images(study.result, study.sources, study.labels, study.hu, uid_seed="s")
    kos = build_kos(study.result, study.sources, study.labels, uid_seed="s")
    other = build_kos(study.result, study.sources, study.labels, uid_seed="t")
    assert again is not None and kos is not None and other is not None
    assert again.series_instance_uid == study.images.series_instance_uid
    assert again.sop_instance_uids == study.images.sop_instance_uids
    assert again.datasets[0].PixelData == study.images.datasets[0].PixelData
    assert again.datasets[0].InstanceCreationTime == study.images.datasets[0].InstanceCreationTime
    assert (kos.series_instance_uid, kos.sop_instance_uid) == (
        study.kos.series_instance_uid,
        study.kos.sop_instance_uid,
    )
    assert other.sop_instance_uid != kos.sop_instance_uid


def test_a_label_map_that_does_not_fit_is_refused(study: Study) -> None:
    with pytest.raises(ReportError, match="label map has shape"):
        build_kos(study.result, study.sources, study.labels[:-1])
    with pytest.raises(ReportError, match="HU volume shape"):
        build_key_images(study.result, study.sources, study.labels, study.hu[:, :-1])
    gone = study.labels.copy()
    gone[gone == 2] = 0
    with pytest.raises(ReportError, match="finding 2 has no voxel"):
        build_kos(study.result, study.sources, gone)


def test_a_finding_missing_from_its_centre_slice_uses_the_nearest_slice_that_holds_it(
    study: Study,
) -> None:
    finding = study.result.findings[0]
    k = study.centre_slice(finding)
    crescent = study.labels.copy()
    crescent[k][crescent[k] == finding.label] = 0
    images = build_key_images(study.result, study.sources, crescent, study.hu)
    assert images is not None
    used = images.datasets[0].SourceImageSequence[0].ReferencedSOPInstanceUID
    assert used in {study.by_k[k - 1].SOPInstanceUID, study.by_k[k + 1].SOPInstanceUID}


# --- the renderer (reused by the review page) -------------------------------------------------


def test_render_a_512_slice_keeps_its_pixels_and_spacing() -> None:
    rng = np.random.default_rng(0)
    plane = rng.normal(-700, 200, (512, 512)).astype(np.float32)
    mask = np.zeros((512, 512), dtype=bool)
    yy, xx = np.mgrid[:512, :512]
    mask[(yy - 200) ** 2 + (xx - 300) ** 2 <= 15**2] = True
    out = render_key_image(plane, mask, ["one line", "two"], (0.7, 0.7))
    assert out.image_rows == 512 and out.rgb.shape[1] == 512 and out.rgb.dtype == np.uint8
    assert out.pixel_spacing_mm == (0.7, 0.7)
    assert np.array_equal(out.source_rows, np.arange(512))
    contour = np.all(out.rgb[:512] == CONTOUR_RGB, axis=2)
    assert np.array_equal(contour, boundary(mask))
    # outside the contour, the lung window: -600 HU is mid-grey, below -1350 black
    grey = out.rgb[:512, :, 0]
    inside = ~contour
    lo, hi = LUNG_WINDOW.center - LUNG_WINDOW.width / 2, LUNG_WINDOW.center + LUNG_WINDOW.width / 2
    assert np.all(grey[inside & (plane <= lo)] == 0) and np.all(grey[inside & (plane >= hi)] == 255)
    assert np.any(out.rgb[512:] != BAND_RGB)  # the text band


def test_render_an_anisotropic_plane_on_square_pixels() -> None:
    """A coronal plane of 1.5 mm slices and 0.75 mm pixels is shown at its true proportions."""
    plane = np.linspace(-1000, 400, 40 * 256, dtype=np.float32).reshape(40, 256)
    mask = np.zeros((40, 256), dtype=bool)
    mask[18:22, 100:110] = True
    out = render_key_image(plane, mask, [], (1.5, 0.75), window=Window(40, 400), min_width=256)
    assert out.image_rows == 80 and out.rgb.shape == (80, 256, 3)  # no text: no band
    assert out.pixel_spacing_mm == (0.75, 0.75)
    assert np.array_equal(out.source_rows, np.repeat(np.arange(40), 2))
    contour = np.all(out.rgb == CONTOUR_RGB, axis=2)
    assert np.array_equal(contour, boundary(np.repeat(mask, 2, axis=0)))


def test_render_refuses_inputs_that_do_not_fit() -> None:
    plane = np.zeros((8, 8))
    with pytest.raises(ValueError, match="mask shape"):
        render_key_image(plane, np.zeros((8, 7), dtype=bool), [], (1, 1))
    with pytest.raises(ValueError, match="2-D"):
        render_key_image(np.zeros((2, 8, 8)), np.zeros((2, 8, 8), dtype=bool), [], (1, 1))
    with pytest.raises(ValueError, match="pixel spacing"):
        render_key_image(plane, plane > 0, [], (0, 1))
