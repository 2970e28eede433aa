"""highdicom's tables of the DICOM standard, loaded before the first study needs them.

highdicom reads its tables of the standard (which modules each IOD has, which attributes each
module has: 23 MB of JSON, ~70 MB once parsed, kept for the process's life) the first time any
of its objects is made. That took 0.3 s alone and ~0.8 s inside the running service, and the
first study a process read paid it in its ``encode`` step. A process that will encode (one
that loads a model, :class:`preread.composition.Predictors`) loads them when it loads its model
instead.
"""

from __future__ import annotations

import functools

import highdicom as hd
from pydicom.uid import Comprehensive3DSRStorage, ExplicitVRLittleEndian, generate_uid

from preread.reports.series import MANUFACTURER

__all__ = ["load_standard_tables"]


@functools.cache
def load_standard_tables() -> None:
    """Make one throw-away highdicom object, which loads the tables (once per process)."""
    hd.SOPClass(
        study_instance_uid=generate_uid(),
        series_instance_uid=generate_uid(),
        series_number=1,
        sop_instance_uid=generate_uid(),
        sop_class_uid=Comprehensive3DSRStorage,
        instance_number=1,
        modality="SR",
        manufacturer=MANUFACTURER,
        transfer_syntax_uid=ExplicitVRLittleEndian,
    )
