"""De-identify DICOM instances: PS3.15 Annex E, Basic Application Level Confidentiality Profile
(E.1, E.2) with the Retain Longitudinal Temporal Information with Modified Dates Option (E.3.6)
and the Clean Descriptors Option (E.3.5), per Table E.1-1 (:mod:`dicom_gateway.deid.profile`,
edition :data:`~dicom_gateway.deid.profile.EDITION`).

Errors::

    GatewayError                      (dicom_gateway.errors)
    └── DeidentificationError         (base of everything dicom_gateway.deid raises on purpose)
        ├── BurnedInAnnotationError   (pixels may show text; names the SOP instance)
        ├── UnsafeAttributeError      (a value that cannot be de-identified; names it)
        └── VaultError                (the re-identification vault, dicom_gateway.deid.vault)
            ├── VaultKeyError         (wrong key, bad key file)
            └── VaultEntryNotFoundError

Rules, where the standard leaves a choice or says nothing:

1. Every private attribute goes (no Retain Safe Private Option), in sequences too; so do group
   lengths. Curve groups (50xx) and overlay groups (60xx) go whole: the table removes Overlay
   Data and Comments, and the rest of an Overlay Plane is useless without them.
2. Compound actions (``X/Z`` …) are resolved per attribute from its Type in the CT, SEG and
   SR IODs (:attr:`~dicom_gateway.deid.profile.ProfileEntry.basic_effect`).
3. Public attributes the table does not list are kept: the standard's analysis presumes them
   non-identifying. Their values are still processed: every DA and DT is shifted; every PN is
   replaced by a dummy (a person's name identifies whatever the attribute); every UI is remapped
   as ``U`` unless it is well-known or names a class, syntax or scheme (the table misses some
   instance UIDs, e.g. SOP Instance UID of Concatenation Source); sequences are kept and their
   items de-identified by the same rules.
4. Refused (:class:`UnsafeAttributeError`): a public attribute with a value that the data
   dictionary does not know (an attribute newer than our table may be identifying), a value
   with VR UN that would have to be read, a date that cannot be parsed, an empty Patient ID.
5. ``Z`` on Patient ID and Patient's Name: both become the patient's pseudonym (``DEID-`` and
   20 hex digits of HMAC(secret, Patient ID)), the "dummy value" that ``Z`` allows.
6. ``D``: text becomes ``ANON`` + 8 hex digits of an HMAC of the original (stable across
   instances), numbers 0, binary two zero bytes, a UID is remapped, a code sequence gets one
   dummy code (scheme ``99DEID``), any other sequence is kept with its items de-identified.
   That is how the Content Sequence of an SR is handled: its tree, its references (remapped)
   and measurements stay, names are replaced, dates shifted. TEXT values inside are kept — a
   deviation from ``D`` that is safe for PreRead's own machine-written SR; SRs with human
   free text need the Clean Structured Content Option, which is not claimed.
7. Clean Descriptors (``C``): a descriptor gets a neutral value derived from coded content the
   profile keeps (:func:`~dicom_gateway.deid.actions.neutral_descriptor`: Series Description
   from Modality and Body Part Examined, Study Description from the Procedure Code Sequence, …);
   without one, the Basic Profile action applies (removed, emptied or dummy). The descriptor's
   own free text is never kept: it cannot be verified. A sequence marked ``C`` is kept with its
   items de-identified.
8. Modified Dates (``C``): one offset per patient, in whole days within
   ``date_shift_range_days`` (0 excluded), from HMAC(secret, Patient ID); every DA and the date
   part of every DT move by it, so intervals are kept; times and UTC offsets are kept.
9. Burned In Annotation YES is refused unless the caller says the pixels were cleaned; then
   Burned In Annotation becomes NO and the Clean Pixel Data Option code is added. An absent
   Burned In Annotation counts as NO (it is Type 3 for CT).
10. Added: Patient Identity Removed YES, Longitudinal Temporal Information Modified MODIFIED,
    De-identification Method and its Code Sequence (CID 7050: DCM 113100, 113107, 113105 and,
    with cleaned pixels, 113101).
"""

from __future__ import annotations

import copy
import enum
from dataclasses import dataclass, field
from typing import Any, NoReturn

from pydicom.datadict import dictionary_VR, get_entry
from pydicom.dataelem import DataElement, empty_value_for_VR
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag

from dicom_gateway.deid import actions
from dicom_gateway.deid.profile import EDITION, Effect, ProfileEntry, profile_entry
from dicom_gateway.errors import GatewayError

__all__ = [
    "BurnedInAnnotationError",
    "DeidentificationError",
    "DeidentifiedInstance",
    "Deidentifier",
    "Mapping",
    "MappingKind",
    "UnsafeAttributeError",
]

_DCM_CODES = {
    "113100": "Basic Application Confidentiality Profile",
    "113101": "Clean Pixel Data Option",
    "113105": "Clean Descriptors Option",
    "113107": "Retain Longitudinal Temporal Information Modified Dates Option",
}
_METHOD = (
    "PS3.15 Basic Application Level Confidentiality Profile",
    "Retain Longitudinal Temporal Information Modified Dates",
    "Clean Descriptors",
)


class DeidentificationError(GatewayError):
    """Base of the errors :mod:`dicom_gateway.deid` raises on purpose."""


class BurnedInAnnotationError(DeidentificationError):
    """An image whose Burned In Annotation is YES: its pixels may show identifying text."""

    def __init__(self, sop_instance_uid: str) -> None:
        self.sop_instance_uid = sop_instance_uid
        super().__init__(
            f"SOP instance {sop_instance_uid}: Burned In Annotation (0028,0301) is YES, the "
            "pixel data may show identifying text; refused (clean the pixels, then pass "
            "pixels_cleaned=True)"
        )


class UnsafeAttributeError(DeidentificationError):
    """An attribute whose value cannot be de-identified safely.

    ``attribute`` is its path (keyword or tag, with the sequence items above it) and
    ``reason`` what is wrong; ``sop_instance_uid`` names the instance.
    """

    def __init__(self, sop_instance_uid: str, attribute: str, reason: str) -> None:
        self.sop_instance_uid = sop_instance_uid
        self.attribute = attribute
        self.reason = reason
        super().__init__(f"SOP instance {sop_instance_uid}: {attribute}: {reason}")


class MappingKind(enum.StrEnum):
    """What a :class:`Mapping` maps (also the ``kind`` of the re-identification vault).

    Patient's Name has no mapping: its pseudonym is the Patient ID's, which is what
    re-identification needs (the name is in the hospital's records, and one patient may appear
    under several spellings); the vault keeps no more than it must.
    """

    PATIENT_ID = "patient_id"
    UID = "uid"
    DATE_OFFSET = "date_offset"  # original: the offset in days; pseudonym: the patient's


@dataclass(frozen=True, slots=True)
class Mapping:
    """One original value and what replaced it, for the re-identification vault."""

    kind: MappingKind
    original: str
    pseudonym: str


@dataclass(frozen=True)
class DeidentifiedInstance:
    """The de-identified dataset and the mappings used to make it."""

    dataset: Dataset
    patient_pseudonym: str
    date_offset_days: int
    mappings: tuple[Mapping, ...]


@dataclass
class _Run:
    """The state of one instance's de-identification."""

    sop_instance_uid: str
    pseudonym: str
    offset: int
    mappings: dict[tuple[MappingKind, str], Mapping] = field(default_factory=dict)

    def record(self, kind: MappingKind, original: str, pseudonym: str) -> None:
        self.mappings.setdefault((kind, original), Mapping(kind, original, pseudonym))


def _name(tag: BaseTag) -> str:
    try:
        keyword = get_entry(tag)[4]
    except KeyError:
        keyword = ""
    return keyword or str(tag)


def _values(elem: DataElement) -> list[Any]:
    if elem.VM == 0:
        return []
    return list(elem.value) if elem.VM > 1 else [elem.value]


def _element(tag: BaseTag, vr: str, values: list[Any]) -> DataElement:
    if not values:
        return DataElement(tag, vr, empty_value_for_VR(vr))
    return DataElement(tag, vr, values if len(values) > 1 else values[0])


class Deidentifier:
    """De-identifies instances under one secret; see the module docstring for the rules.

    Args:
        secret: the key of every HMAC (UIDs, pseudonyms, date offsets, dummies), at least 16
            bytes. The same secret gives the same output for the same input, so a study and
            the SEG and SR made of it stay consistent; keep it as secret as the vault key.
        date_shift_range_days: the inclusive range of the per-patient date offset; it must not
            contain 0, so that every date is modified.

    Example::

        deid = Deidentifier(secret)
        result = deid.deidentify_instance(pydicom.dcmread(path))
        vault.record_all(result.mappings)
        result.dataset.save_as(out_path, enforce_file_format=True)
    """

    def __init__(self, secret: bytes, *, date_shift_range_days: tuple[int, int] = (-365, -1)):
        if len(secret) < 16:
            raise ValueError("the de-identification secret must have at least 16 bytes")
        low, high = date_shift_range_days
        if low > high or low <= 0 <= high:
            raise ValueError(
                f"date_shift_range_days {date_shift_range_days} must be a range without 0"
            )
        self._secret = bytes(secret)
        self._range = (low, high)

    def patient_pseudonym(self, patient_id: str) -> str:
        """The pseudonym that replaces Patient ID and Patient's Name of this patient."""
        return actions.patient_pseudonym(self._secret, patient_id)

    def date_offset_days(self, patient_id: str) -> int:
        """The number of days every date of this patient is moved by."""
        return actions.date_offset_days(self._secret, patient_id, *self._range)

    def remap_uid(self, uid: str) -> str:
        """The UID that replaces ``uid`` (unchanged when well-known)."""
        return actions.remap_uid(self._secret, uid)

    def deidentify(self, ds: Dataset, *, pixels_cleaned: bool = False) -> Dataset:
        """A de-identified copy of ``ds`` (which is left untouched); see
        :meth:`deidentify_instance`, which also returns the mappings."""
        return self.deidentify_instance(ds, pixels_cleaned=pixels_cleaned).dataset

    def deidentify_instance(
        self, ds: Dataset, *, pixels_cleaned: bool = False
    ) -> DeidentifiedInstance:
        """De-identify one instance (and its File Meta Information, when it has one).

        Args:
            ds: the instance; not modified.
            pixels_cleaned: the caller has removed any burned-in text from the pixel data
                (Clean Pixel Data Option); required for Burned In Annotation YES.

        Raises:
            BurnedInAnnotationError: Burned In Annotation is YES and ``pixels_cleaned`` is
                False.
            UnsafeAttributeError: a value that cannot be de-identified safely (module
                docstring, rule 4).
        """
        sop = str(ds.get("SOPInstanceUID", "") or "") or "<no SOP Instance UID>"
        burned_in = str(ds.get("BurnedInAnnotation", "") or "").strip().upper()
        if burned_in == "YES" and not pixels_cleaned:
            raise BurnedInAnnotationError(sop)
        patient_id = str(ds.get("PatientID", "") or "").strip()
        if not patient_id:
            raise UnsafeAttributeError(
                sop,
                "PatientID",
                "empty or missing: the pseudonym and the date offset are derived from it",
            )
        run = _Run(sop, self.patient_pseudonym(patient_id), self.date_offset_days(patient_id))
        run.record(MappingKind.PATIENT_ID, patient_id, run.pseudonym)
        run.record(MappingKind.DATE_OFFSET, str(run.offset), run.pseudonym)

        out = self._dataset(ds, run, ())
        out.PatientID = run.pseudonym
        out.PatientName = run.pseudonym
        out.PatientIdentityRemoved = "YES"
        out.LongitudinalTemporalInformationModified = "MODIFIED"
        codes = ["113100", "113107", "113105"]
        method = [*_METHOD, f"Table E.1-1 {EDITION}"]
        if pixels_cleaned:
            codes.append("113101")
            method.append("Clean Pixel Data")
            if "BurnedInAnnotation" in ds:
                out.BurnedInAnnotation = "NO"
        out.DeidentificationMethod = method
        out.DeidentificationMethodCodeSequence = Sequence([_dcm_code(c) for c in codes])
        meta = getattr(ds, "file_meta", None)
        if meta is not None:
            out.file_meta = FileMetaDataset(self._dataset(meta, run, ("file meta",)))
        return DeidentifiedInstance(
            dataset=out,
            patient_pseudonym=run.pseudonym,
            date_offset_days=run.offset,
            mappings=tuple(run.mappings.values()),
        )

    # the walk ------------------------------------------------------------------------------

    def _dataset(self, src: Dataset, run: _Run, parents: tuple[str, ...]) -> Dataset:
        out = Dataset()
        for elem in src:
            new = self._process(elem, src, run, parents)
            if new is not None:
                out.add(new)
        return out

    def _refuse(self, run: _Run, parents: tuple[str, ...], tag: BaseTag, reason: str) -> NoReturn:
        path = " > ".join((*parents, f"{_name(tag)} {tag}"))
        raise UnsafeAttributeError(run.sop_instance_uid, path, reason)

    def _process(
        self, elem: DataElement, src: Dataset, run: _Run, parents: tuple[str, ...]
    ) -> DataElement | None:
        tag = elem.tag
        if tag.is_private or tag.element == 0:
            return None  # private attributes (Table E.1-1: X) and group lengths
        entry = profile_entry(int(tag))
        effect = entry.effect if entry is not None else None
        if elem.VR == "UN" and not elem.is_empty:
            if effect in (Effect.REMOVE, Effect.EMPTY):
                vr = dictionary_VR(tag) if entry is not None else "UN"
                return None if effect is Effect.REMOVE else _element(tag, vr, [])
            self._refuse(run, parents, tag, "value of unknown VR (UN) cannot be de-identified")
        if entry is None:
            return self._unlisted(elem, run, parents)
        assert effect is not None
        try:
            return self._apply(effect, entry, elem, src, run, parents)
        except ValueError as exc:
            self._refuse(run, parents, tag, str(exc))

    def _apply(
        self,
        effect: Effect,
        entry: ProfileEntry,
        elem: DataElement,
        src: Dataset,
        run: _Run,
        parents: tuple[str, ...],
    ) -> DataElement | None:
        tag, vr = elem.tag, elem.VR
        if effect is Effect.REMOVE:
            return None
        if effect is Effect.EMPTY:
            if entry.keyword == "PatientName":
                return DataElement(tag, vr, run.pseudonym)
            if entry.keyword == "PatientID":
                pid = str(elem.value or "").strip()
                return _element(tag, vr, [self.patient_pseudonym(pid)] if pid else [])
            return _element(tag, vr, [])
        if effect is Effect.DUMMY:
            return self._dummy(elem, run, parents)
        if effect is Effect.REMAP_UID:
            return self._remap(elem, run)
        if effect is Effect.SHIFT_DATES:
            return self._shift(elem, run)
        if effect is Effect.CLEAN_DESCRIPTOR:
            if vr != "SQ":
                value = actions.neutral_descriptor(entry.keyword, src, vr)
                if value is None:
                    return self._apply(entry.basic_effect, entry, elem, src, run, parents)
                return DataElement(tag, vr, value)
            return self._items(elem, run, parents)
        return self._keep(elem, run, parents)  # KEEP, DEIDENTIFY_ITEMS

    def _unlisted(
        self, elem: DataElement, run: _Run, parents: tuple[str, ...]
    ) -> DataElement | None:
        """A public attribute Table E.1-1 does not list (module docstring, rules 3 and 4)."""
        try:
            keyword = get_entry(elem.tag)[4]
        except KeyError:
            if elem.is_empty:
                return None
            self._refuse(run, parents, elem.tag, "not in the data dictionary: cannot tell it safe")
        vr = elem.VR
        if vr == "PN" and not elem.is_empty:
            return self._dummy(elem, run, parents)
        if vr == "UI" and not actions.names_a_class(keyword):
            return self._remap(elem, run)
        if vr in ("DA", "DT"):
            try:
                return self._shift(elem, run)
            except ValueError as exc:
                self._refuse(run, parents, elem.tag, str(exc))
        return self._keep(elem, run, parents)

    # the actions ---------------------------------------------------------------------------

    def _keep(self, elem: DataElement, run: _Run, parents: tuple[str, ...]) -> DataElement:
        if elem.VR == "SQ":
            return self._items(elem, run, parents)
        return DataElement(elem.tag, elem.VR, copy.deepcopy(elem.value))

    def _items(self, elem: DataElement, run: _Run, parents: tuple[str, ...]) -> DataElement:
        name = _name(elem.tag)
        items = [
            self._dataset(item, run, (*parents, f"{name}[{i}]"))
            for i, item in enumerate(elem.value or [])
        ]
        return DataElement(elem.tag, "SQ", Sequence(items))

    def _remap(self, elem: DataElement, run: _Run) -> DataElement:
        new = []
        for value in _values(elem):
            uid = str(value).strip("\0 ")
            mapped = actions.remap_uid(self._secret, uid)
            if mapped != uid:
                run.record(MappingKind.UID, uid, mapped)
            new.append(mapped)
        return _element(elem.tag, elem.VR, new)

    def _shift(self, elem: DataElement, run: _Run) -> DataElement:
        shift = {"DA": actions.shift_date, "DT": actions.shift_datetime}.get(elem.VR)
        if shift is None:  # TM, and Timezone Offset From UTC: kept (whole days only)
            return DataElement(elem.tag, elem.VR, copy.deepcopy(elem.value))
        return _element(elem.tag, elem.VR, [shift(str(v), run.offset) for v in _values(elem)])

    def _dummy(self, elem: DataElement, run: _Run, parents: tuple[str, ...]) -> DataElement:
        vr = elem.VR
        if vr == "UI":
            return self._remap(elem, run)
        if vr == "SQ":
            if _name(elem.tag).endswith("CodeSequence"):
                originals = [str(item.get("CodeValue", "")) for item in elem.value or []]
                return DataElement(
                    elem.tag, "SQ", Sequence([self._dummy_code(v) for v in originals or [""]])
                )
            return self._items(elem, run, parents)
        originals = [str(v) for v in _values(elem)] or [""]
        return _element(elem.tag, vr, [actions.dummy_value(vr, v, self._secret) for v in originals])

    def _dummy_code(self, original: str) -> Dataset:
        item = Dataset()
        item.CodeValue = actions.dummy_value("SH", original, self._secret)
        item.CodingSchemeDesignator = "99DEID"
        item.CodeMeaning = "de-identified"
        return item


def _dcm_code(value: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = "DCM"
    item.CodeMeaning = _DCM_CODES[value]
    return item
