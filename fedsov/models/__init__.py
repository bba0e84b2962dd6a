"""The model registry: every global model version, its lineage, verified loads and exports."""

from fedsov.models.export import ExportFormat, export_model
from fedsov.models.registry import MIN_PREFIX, ModelRegistry
from fedsov.models.version import ModelVersion

__all__ = ["MIN_PREFIX", "ExportFormat", "ModelRegistry", "ModelVersion", "export_model"]
