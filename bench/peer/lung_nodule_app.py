"""The peer of ``bench/monai_deploy_peer.py``: PreRead's lung-nodule model as a MONAI Deploy app.

Runs in its own virtual environment (``.venv-peer``: ``monai-deploy-app-sdk`` from PyPI, which
brings Holoscan, plus ``torch==2.13.0`` and ``monai``), never in PreRead's: this file is
excluded from mypy because the SDK is untyped and absent from the project venv.

It is written the way the SDK's own example apps are (``examples/apps/ai_livertumor_seg_app``
and ``ai_spleen_seg_app`` in Project-MONAI/monai-deploy-app-sdk): an ``Application`` whose
``compose()`` wires

    DICOMDataLoaderOperator -> DICOMSeriesSelectorOperator -> DICOMSeriesToVolumeOperator
      -> LungNoduleSegOperator (MonaiSegInferenceOperator: MONAI pre-transforms, sliding window
         on the TorchScript model, post-transforms)
      -> DICOMSegmentationWriterOperator (DICOM SEG)
      -> NoduleSummaryOperator (text) -> DICOMTextSRWriterOperator (Basic Text SR)

and is started as its users start one:
``python lung_nodule_app.py -i <DICOM folder> -o <output folder> -m <model.ts>``.

The preprocessing mirrors the model card (``models/lung-nodule/1.0.0/model.yaml``): 1 mm
isotropic spacing (bilinear), the array in PreRead's (z, y, x) LPS order (``Orientationd``
``SPL`` in MONAI's RAS convention), the window -1000..400 HU onto [0, 1] clipped, the body's
box (windowed value > that of -500 HU, grown by 10 mm) as PreRead crops to the body; sliding
window 96^3, overlap 0.25, batch 2, gaussian mode, sigma_scale 0.125; softmax, argmax, and
the labels brought back to the series grid (``Invertd``).

Prints one line ``PEER-TIMINGS {json}``: when each step was reached (seconds since the SDK and
its imports were loaded: ``compose``, ``volume_received`` (DICOM loaded, series selected,
volume built), ``inferred`` (pre-transforms, sliding window, post-transforms), ``summarized``,
``finished`` (SEG and SR files written)) and the nodule count, for the benchmark to read.
"""

import json
import time
from pathlib import Path

import numpy as np
from monai.deploy.conditions import CountCondition
from monai.deploy.core import AppContext, Application, Fragment, Operator, OperatorSpec
from monai.deploy.core.domain import Image
from monai.deploy.operators.dicom_data_loader_operator import DICOMDataLoaderOperator
from monai.deploy.operators.dicom_seg_writer_operator import (
    DICOMSegmentationWriterOperator,
    SegmentDescription,
)
from monai.deploy.operators.dicom_series_selector_operator import DICOMSeriesSelectorOperator
from monai.deploy.operators.dicom_series_to_volume_operator import DICOMSeriesToVolumeOperator
from monai.deploy.operators.dicom_text_sr_writer_operator import (
    DICOMTextSRWriterOperator,
    ModelInfo,
)
from monai.deploy.operators.monai_seg_inference_operator import (
    InfererType,
    InMemImageReader,
    MonaiSegInferenceOperator,
)
from monai.transforms import (
    Activationsd,
    AsDiscreted,
    Compose,
    CropForegroundd,
    EnsureChannelFirstd,
    Invertd,
    LoadImaged,
    Orientationd,
    ScaleIntensityRanged,
    Spacingd,
)
from pydicom.sr.codedict import codes
from scipy import ndimage

WINDOW_MIN_HU, WINDOW_MAX_HU = -1000.0, 400.0
BODY_HU = -500.0
BODY_LEVEL = (BODY_HU - WINDOW_MIN_HU) / (WINDOW_MAX_HU - WINDOW_MIN_HU)
MARKS: dict[str, float] = {}
T0 = time.perf_counter()
RESULT: dict[str, object] = {}


def _mark(name):
    """Note when a step was reached (seconds since the process started the app)."""
    MARKS[name] = time.perf_counter() - T0


def _body(x):
    return x > BODY_LEVEL


class LungNoduleSegOperator(Operator):
    """Lung nodule segmentation by MonaiSegInferenceOperator (as LiverTumorSegOperator does)."""

    def __init__(
        self, fragment: Fragment, *args, app_context: AppContext, model_path: Path, **kwargs
    ):
        self._input_dataset_key = "image"
        self._pred_dataset_key = "pred"
        self.model_path = model_path
        self.app_context = app_context
        self.input_name_image = "image"
        self.output_name_seg = "seg_image"
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec):
        spec.input(self.input_name_image)
        spec.output(self.output_name_seg)

    def compute(self, op_input, op_output, context):
        input_image = op_input.receive(self.input_name_image)
        _mark("volume_received")
        if not input_image:
            raise ValueError("Input image is not found.")
        reader = InMemImageReader(input_image)
        pre_transforms = self.pre_process(reader)
        post_transforms = self.post_process(pre_transforms)
        infer_operator = MonaiSegInferenceOperator(
            self.fragment,
            roi_size=(96, 96, 96),
            pre_transforms=pre_transforms,
            post_transforms=post_transforms,
            overlap=0.25,
            app_context=self.app_context,
            model_name="",
            inferer=InfererType.SLIDING_WINDOW,
            sw_batch_size=2,
            model_path=self.model_path,
            mode="gaussian",
            sigma_scale=0.125,
            name="monai_seg_inference_op",
        )
        infer_operator.input_dataset_key = self._input_dataset_key
        infer_operator.pred_dataset_key = self._pred_dataset_key
        seg_image = infer_operator.compute_impl(input_image, context)
        _mark("inferred")
        op_output.emit(seg_image, self.output_name_seg)

    def pre_process(self, img_reader) -> Compose:
        key = self._input_dataset_key
        return Compose(
            [
                LoadImaged(keys=key, reader=img_reader),
                EnsureChannelFirstd(keys=key),
                Orientationd(keys=key, axcodes="SPL"),
                Spacingd(keys=key, pixdim=(1.0, 1.0, 1.0), mode="bilinear", align_corners=True),
                ScaleIntensityRanged(
                    keys=key,
                    a_min=WINDOW_MIN_HU,
                    a_max=WINDOW_MAX_HU,
                    b_min=0.0,
                    b_max=1.0,
                    clip=True,
                ),
                CropForegroundd(
                    keys=key, source_key=key, select_fn=_body, margin=10, allow_smaller=True
                ),
            ]
        )

    def post_process(self, pre_transforms: Compose) -> Compose:
        key = self._pred_dataset_key
        return Compose(
            [
                Activationsd(keys=key, softmax=True),
                AsDiscreted(keys=key, argmax=True),
                Invertd(
                    keys=key,
                    transform=pre_transforms,
                    orig_keys=self._input_dataset_key,
                    nearest_interp=True,
                ),
            ]
        )


class NoduleSummaryOperator(Operator):
    """The text of the SR: the nodules (connected components >= 10 mm^3) in the label image."""

    def setup(self, spec: OperatorSpec):
        spec.input("seg_image")
        spec.output("result_text")

    def compute(self, op_input, op_output, context):
        seg: Image = op_input.receive("seg_image")
        labels = np.asarray(seg.asnumpy()) > 0
        meta = seg.metadata()
        voxel_mm3 = float(meta.get("row_pixel_spacing", 1.0)) * float(
            meta.get("col_pixel_spacing", 1.0)
        )
        voxel_mm3 *= float(meta.get("depth_pixel_spacing", 1.0))
        components, n = ndimage.label(labels, structure=np.ones((3, 3, 3), dtype=bool))
        sizes = np.bincount(components.ravel())[1:] if n else np.zeros(0, dtype=np.int64)
        volumes = sorted(
            (float(s) * voxel_mm3 for s in sizes if s * voxel_mm3 >= 10.0), reverse=True
        )
        RESULT.update(nodules=len(volumes), components=int(n), foreground_voxels=int(labels.sum()))
        lines = [f"AI pre-read (MONAI Deploy peer): {len(volumes)} lung nodule candidate(s)."]
        lines += [f"Nodule {i}: {v:.0f} mm3" for i, v in enumerate(volumes, start=1)]
        _mark("summarized")
        op_output.emit("\n".join(lines), "result_text")


class LungNoduleApp(Application):
    """DICOM in, DICOM SEG + text SR out, PreRead's lung-nodule network in between."""

    def compose(self):
        _mark("compose")
        app_context: AppContext = Application.init_app_context(self.argv)
        app_input_path = Path(app_context.input_path)
        app_output_path = Path(app_context.output_path)
        model_path = Path(app_context.model_path)

        study_loader_op = DICOMDataLoaderOperator(
            self, CountCondition(self, 1), input_folder=app_input_path, name="dcm_loader_op"
        )
        series_selector_op = DICOMSeriesSelectorOperator(
            self, rules=RULES, name="series_selector_op"
        )
        series_to_vol_op = DICOMSeriesToVolumeOperator(self, name="series_to_vol_op")
        seg_op = LungNoduleSegOperator(
            self, app_context=app_context, model_path=model_path, name="seg_op"
        )
        segment = SegmentDescription(
            segment_label="Nodule",
            segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
            segmented_property_type=codes.SCT.Nodule,
            algorithm_name="PreRead lung nodule segmentation (MONAI Deploy peer)",
            algorithm_family=codes.DCM.ArtificialIntelligence,
            algorithm_version="1.0.0",
        )
        seg_writer_op = DICOMSegmentationWriterOperator(
            self,
            segment_descriptions=[segment],
            output_folder=app_output_path,
            name="dcm_seg_writer_op",
        )
        summary_op = NoduleSummaryOperator(self, name="summary_op")
        sr_writer_op = DICOMTextSRWriterOperator(
            self,
            copy_tags=True,
            model_info=ModelInfo("PreRead model team", "lung-nodule", "1.0.0", ""),
            custom_tags={"SeriesDescription": "AI generated SR, not for clinical use."},
            output_folder=app_output_path,
            name="dcm_sr_writer_op",
        )
        self.add_flow(
            study_loader_op, series_selector_op, {("dicom_study_list", "dicom_study_list")}
        )
        self.add_flow(
            series_selector_op,
            series_to_vol_op,
            {("study_selected_series_list", "study_selected_series_list")},
        )
        self.add_flow(series_to_vol_op, seg_op, {("image", "image")})
        self.add_flow(
            series_selector_op,
            seg_writer_op,
            {("study_selected_series_list", "study_selected_series_list")},
        )
        self.add_flow(seg_op, seg_writer_op, {("seg_image", "seg_image")})
        self.add_flow(seg_op, summary_op, {("seg_image", "seg_image")})
        self.add_flow(summary_op, sr_writer_op, {("result_text", "text")})
        self.add_flow(
            series_selector_op,
            sr_writer_op,
            {("study_selected_series_list", "study_selected_series_list")},
        )


RULES = """
{
    "selections": [
        {
            "name": "CT Series",
            "conditions": {
                "Modality": "(?i)CT",
                "ImageType": ["PRIMARY", "ORIGINAL"],
                "PhotometricInterpretation": "MONOCHROME2"
            }
        }
    ]
}
"""

if __name__ == "__main__":
    _mark("imported")
    LungNoduleApp().run()
    _mark("finished")
    print("PEER-TIMINGS " + json.dumps({"marks": MARKS, **RESULT}), flush=True)
