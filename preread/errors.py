"""PreRead's base exception; every package's own errors derive from it.

PrereadError
├── inference.errors.InferenceError   (package, provider, preprocessing)
├── dicom_gateway.errors.GatewayError (series that cannot be read)
└── training.errors.TrainingError     (configs, annotations, export parity)
"""


class PrereadError(Exception):
    """Base of all errors PreRead raises on purpose; the CLI prints them without a traceback."""
