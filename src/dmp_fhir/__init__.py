"""dmp-fhir: a FHIR R4 server for the French shared health record (DMP)."""

__version__ = "0.1.0"
FHIR_VERSION = "4.0.1"

__all__ = ["FHIR_VERSION", "__version__"]
