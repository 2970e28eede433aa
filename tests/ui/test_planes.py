"""The review page's planes from any axis-aligned series: patient order whatever the acquisition
(feet first, a coronal series), planes shown as radiologists read them, indices and LPS both
ways, key images centred on the finding with their contour (padded with air at the edge)."""

from __future__ import annotations

import io

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from preread.domain import Geometry
from preread.reports.render import CONTOUR_RGB
from preread.ui.planes import Oriented, Plane, key_png, slice_png

FEET_FIRST = Geometry(  # slices towards the feet, rows towards the patient's right
    shape=(6, 7, 8),
    origin=(40.0, -20.0, 30.0),
    row_direction=(-1.0, 0.0, 0.0),
    column_direction=(0.0, 1.0, 0.0),
    slice_direction=(0.0, 0.0, -1.0),
    spacing=(2.0, 1.5, 1.0),
)
CORONAL = Geometry(  # a coronal series: slices posterior, rows left, columns down
    shape=(5, 9, 7),
    origin=(-3.0, -10.0, 20.0),
    row_direction=(1.0, 0.0, 0.0),
    column_direction=(0.0, 0.0, -1.0),
    slice_direction=(0.0, 1.0, 0.0),
    spacing=(3.0, 2.0, 1.0),
)


def _lps_coded(geometry: Geometry) -> npt.NDArray[np.float32]:
    """Each voxel's value: x + 100 y + 10000 z of its centre (strictly increasing along L, P,
    S)."""
    k, j, i = np.indices(geometry.shape)
    lps = geometry.index_to_lps(np.stack([k, j, i], axis=-1))
    return np.asarray(lps[..., 0] + 100 * lps[..., 1] + 1e4 * lps[..., 2], dtype=np.float32)


@pytest.mark.parametrize("geometry", [FEET_FIRST, CORONAL], ids=["feet-first", "coronal"])
def test_any_axis_aligned_series_is_seen_in_patient_order(geometry: Geometry) -> None:
    oriented = Oriented.of(_lps_coded(geometry), geometry)
    hu = oriented.hu.astype(np.float64)
    for axis in range(3):
        assert np.all(np.diff(hu, axis=axis) > 0), axis  # z, y, x increase towards S, P, L
    point = (1.5, 2.0, 3.0)
    back = oriented.to_lps(oriented.from_lps(point))
    assert np.allclose(back, point)
    zyx = np.array([1, 2, 3])
    assert np.allclose(oriented.from_source(oriented.to_source(zyx)), zyx)
    lps = oriented.to_lps(zyx)
    assert hu[1, 2, 3] == pytest.approx(lps[0] + 100 * lps[1] + 1e4 * lps[2], rel=1e-6)

    axial, _ = oriented.plane(Plane.AXIAL, 1)
    assert np.all(np.diff(axial, axis=1) > 0)  # columns: the patient's right -> left
    assert np.all(np.diff(axial, axis=0) > 0)  # rows: anterior -> posterior
    coronal, _ = oriented.plane(Plane.CORONAL, 1)
    assert np.all(np.diff(coronal, axis=0) < 0)  # rows: superior -> inferior
    sagittal, spacing = oriented.plane(Plane.SAGITTAL, 1)
    assert np.all(np.diff(sagittal, axis=0) < 0) and np.all(np.diff(sagittal, axis=1) > 0)
    assert spacing == (oriented.spacing[0], oriented.spacing[1])
    assert oriented.axial_index(oriented.axial_index(2)) == 2
    top, _ = oriented.plane(Plane.AXIAL, oriented.axial_index(0))
    assert top.min() > hu[:-1].max()  # slice 0 of the scroll is the most superior


def test_an_oblique_series_is_refused() -> None:
    tilted = Geometry((2, 2, 2), (0, 0, 0), (1, 0, 0), (0, 0.7, 0.7), (0, -0.7, 0.7), (1, 1, 1))
    with pytest.raises(ValueError, match="oblique"):
        Oriented.of(np.zeros((2, 2, 2), dtype=np.float32), tilted)


def _contour(png: bytes) -> npt.NDArray[np.intp]:
    rgb = np.asarray(Image.open(io.BytesIO(png)))
    return np.argwhere(np.all(rgb == np.asarray(CONTOUR_RGB, dtype=np.uint8), axis=-1))


def test_key_images_centre_the_finding_and_pad_at_the_edge() -> None:
    g = Geometry(
        (20, 64, 64), (-32.0, -32.0, -10.0), (1, 0, 0), (0, 1, 0), (0, 0, 1), (1.0, 1.0, 1.0)
    )
    hu = np.full(g.shape, -850.0, dtype=np.float32)
    oriented = Oriented.of(hu, g)
    # a 5-voxel ball at the very edge of the series: x index 1
    zz, yy, xx = np.indices(g.shape)
    ball = (zz - 10) ** 2 + (yy - 30) ** 2 + (xx - 1) ** 2 <= 4
    hu[ball] = 40.0
    voxels = np.argwhere(ball).astype(np.int32)  # axial series: [k, j, i] is [z, y, x]
    centre = oriented.to_lps([10, 30, 1])
    for plane in Plane:
        png = key_png(oriented, plane, centre, voxels, field_mm=40.0, min_width=200)
        image = Image.open(io.BytesIO(png))
        assert image.width >= 200
        contour = _contour(png)
        assert len(contour) > 4, plane
        middle = contour.mean(axis=0) / np.array([image.height, image.width])
        assert np.all(np.abs(middle - 0.5) < 0.06), (plane, middle)  # centred, padded
    whole = slice_png(oriented, oriented.axial_index(10), [voxels])
    assert Image.open(io.BytesIO(whole)).width == 512 and len(_contour(whole)) > 4
    assert len(_contour(slice_png(oriented, oriented.axial_index(0), [voxels]))) == 0
