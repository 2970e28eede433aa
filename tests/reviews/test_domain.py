"""The review as typed data: what a verdict may say, completeness before signing, and the
stored JSON's round trip (masks included)."""

from __future__ import annotations

import numpy as np
import pytest

from preread.reviews import (
    Accepted,
    AddedNodule,
    AiFinding,
    Assessment,
    Modified,
    Rejected,
    RejectReason,
    ReviewDraft,
    Reviewer,
    ReviewError,
    VoxelMask,
    check_complete,
)
from preread.reviews.codec import decode_content, encode_content

FINDINGS = (AiFinding(1, "1.2.3.1"), AiFinding(2, "1.2.3.2"), AiFinding(3, "1.2.3.3"))


def added(uid: str | None = "1.2.3.99") -> AddedNodule:
    array = np.zeros((3, 4, 5), dtype=bool)
    array[1, 1:3, 1:4] = True
    array[0, 2, 2] = True
    return AddedNodule(
        click_lps_mm=(1.0, 2.0, 3.0),
        centre_lps_mm=(1.5, 2.0, 3.0),
        long_axis_mm=6.2,
        short_axis_mm=5.1,
        long_axis_3d_mm=6.8,
        volume_mm3=95.0,
        mean_hu=-20.0,
        nodule_type="solid",
        mask=VoxelMask(grid_shape=(10, 20, 20), offset_kji=(2, 3, 4), array=array),
        tracking_uid=uid,
    )


def test_verdicts_say_only_what_a_reader_may_say() -> None:
    with pytest.raises(ReviewError, match="'other' reason needs a text"):
        Rejected(RejectReason.OTHER)
    with pytest.raises(ReviewError, match="'other' reason needs a text"):
        Rejected(RejectReason.OTHER, "   ")
    assert Rejected(RejectReason.OTHER, " mucus plug ").text == "mucus plug"
    assert Rejected("vessel").reason is RejectReason.VESSEL  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'tumour'"):
        Rejected("tumour")  # type: ignore[arg-type]
    with pytest.raises(ReviewError, match="control character"):
        Rejected(RejectReason.ARTEFACT, "line\rbreak")
    with pytest.raises(ReviewError, match="changes none"):
        Modified()
    with pytest.raises(ReviewError, match="unknown nodule type 'cavitary'"):
        Modified(nodule_type="cavitary")  # type: ignore[arg-type]
    with pytest.raises(ReviewError, match=r"short axis .* longer than the long axis"):
        Modified(long_axis_mm=5.0, short_axis_mm=6.0)
    with pytest.raises(ReviewError, match="long axis must be in"):
        Modified(long_axis_mm=-1.0)
    with pytest.raises(ReviewError, match="long axis must be in"):
        Modified(long_axis_mm=float("nan"))
    assert Modified(nodule_type="part-solid").long_axis_mm is None
    with pytest.raises(ReviewError, match="name is empty"):
        Reviewer("u1", " ", "hosp-a")
    with pytest.raises(ReviewError, match="always reader-placed"):
        AddedNodule(**{**added().__dict__, "reader_placed": False})
    with pytest.raises(ReviewError, match="leaves the grid"):
        VoxelMask((2, 2, 2), (1, 0, 0), np.ones((2, 1, 1), dtype=bool))
    with pytest.raises(ReviewError, match="non-empty"):
        VoxelMask((2, 2, 2), (0, 0, 0), np.zeros((1, 1, 1), dtype=bool))


def test_every_ai_finding_needs_exactly_one_assessment_before_signing() -> None:
    one, two, three = (Assessment(f.tracking_uid, f.number, Accepted()) for f in FINDINGS)
    check_complete(FINDINGS, ReviewDraft((one, two, three)))
    with pytest.raises(ReviewError, match=r"AI finding\(s\) 2 not assessed yet"):
        check_complete(FINDINGS, ReviewDraft((one, three)))
    with pytest.raises(ReviewError, match=r"AI finding\(s\) 1 assessed more than once"):
        check_complete(FINDINGS, ReviewDraft((one, one, two, three)))
    stranger = Assessment("9.9.9", 7, Accepted())
    with pytest.raises(ReviewError, match=r"finding 7 names tracking UID 9\.9\.9, which is no"):
        check_complete(FINDINGS, ReviewDraft((one, two, three, stranger)))
    swapped = Assessment("1.2.3.1", 2, Accepted())
    with pytest.raises(ReviewError, match=r"1\.2\.3\.1 is AI finding 1, not 2"):
        check_complete(FINDINGS, ReviewDraft((swapped, two, three)))
    check_complete((), ReviewDraft())  # nothing found, nothing to assess


def test_content_round_trips_through_the_stored_json() -> None:
    assessments = (
        Assessment("1.2.3.1", 1, Accepted()),
        Assessment("1.2.3.2", 2, Rejected(RejectReason.SCAR_FIBROSIS, "old scar")),
        Assessment("1.2.3.3", 3, Modified("ground-glass", 7.5, 6.0)),
    )
    nodule = added()
    content = encode_content(assessments, (nodule,))
    assert content["schema"] == 1 and content["added"][0]["reader_placed"] is True
    again, (back,) = decode_content(content)
    assert again == assessments
    assert back == nodule and back.mask == nodule.mask
    assert back.mask.voxel_count == 7 and back.mean_diameter_mm == 5.7
    labels = np.zeros((10, 20, 20), dtype=np.uint8)
    back.mask.paint(labels, 7)
    assert int((labels == 7).sum()) == 7 and labels[3, 4:6, 5:8].all()
    with pytest.raises(ReviewError, match="tracking UID"):
        encode_content((), (added(uid=None),))
    with pytest.raises(ReviewError, match="schema 2"):
        decode_content({**content, "schema": 2})
