"""Where a training run's data came from, kept in the run folder (``dataset.json``) and copied
into the model card at publication: the model-training grants of its studies (so that revoking
a grant lists the models trained on it) and how the data were de-identified."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

FILE = "dataset.json"


@dataclass(frozen=True)
class DatasetProvenance:
    source: str  # phantoms | folder | orthanc | datasets
    grants: tuple[str, ...] = ()
    studies: int = 0
    refused: int = 0
    deidentification: str | None = None
    datasets: tuple[str, ...] = ()
    """NAME@VERSION sha256:… of each dataset version it trained on."""

    def write(self, run_dir: Path) -> Path:
        path = run_dir / FILE
        path.write_text(json.dumps(asdict(self), indent=1))
        return path

    @classmethod
    def read(cls, run_dir: Path) -> DatasetProvenance | None:
        path = run_dir / FILE
        if not path.is_file():
            return None
        doc = json.loads(path.read_text())
        return cls(
            source=str(doc["source"]),
            grants=tuple(doc.get("grants", ())),
            studies=int(doc.get("studies", 0)),
            refused=int(doc.get("refused", 0)),
            deidentification=doc.get("deidentification"),
            datasets=tuple(doc.get("datasets", ())),
        )

    def authorization(self) -> str:
        """The card's ``data_authorization`` text."""
        if self.source == "phantoms":
            return "synthetic data, no patient data"
        if not self.grants:
            return f"annotations from a {self.source}: no grant recorded"
        text = f"{self.studies} studies under model-training grant(s) {', '.join(self.grants)}"
        if self.datasets:
            text += f" (datasets {', '.join(self.datasets)})"
        return f"{text}; de-identified: {self.deidentification}" if self.deidentification else text
