"""The serving side must work on an install without torch and monai."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent(
    """
    import importlib, importlib.abc, json, pkgutil, sys
    from pathlib import Path

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torch", "monai"):
                raise ImportError(f"{name} is blocked: the serving install has no torch/monai")
            return None

    sys.meta_path.insert(0, Block())
    imported = []
    for package in ("inference", "dicom_gateway"):
        try:
            root = importlib.import_module(package)
        except ModuleNotFoundError:
            continue
        imported.append(package)
        for info in pkgutil.walk_packages(root.__path__, package + "."):
            importlib.import_module(info.name)
            imported.append(info.name)

    import numpy as np
    from inference import ModelPackage, Predictor
    from preread.domain import Geometry, Volume

    package = ModelPackage.load(Path(sys.argv[1]))
    g = Geometry((30, 60, 60), (-30.0, -30.0, -30.0), (1, 0, 0), (0, 1, 0), (0, 0, 1),
                 (2.0, 1.0, 1.0))
    arr = np.full(g.shape, -850.0, np.float32)
    arr[12:17, 25:35, 25:35] = 0.0
    prediction = Predictor(package).predict(Volume(arr, g))
    print(json.dumps({
        "imported": imported,
        "findings": len(prediction.findings),
        "provider": prediction.session_info.provider,
        "torch": "torch" in sys.modules,
        "monai": "monai" in sys.modules,
    }))
    """
)


def test_serving_side_needs_neither_torch_nor_monai(package_dir: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(package_dir)],
        capture_output=True,
        text=True,
        cwd=root,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["torch"] is False and result["monai"] is False
    assert result["findings"] == 1
    assert result["provider"] == "CPUExecutionProvider"
    for module in ("inference.predict", "inference.session", "inference.sliding_window"):
        assert module in result["imported"]
