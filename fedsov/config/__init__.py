"""Config files: TOML into frozen, validated sections whose errors name the file and key.

The bottom layer: it imports nothing from fedsov but ``fedsov.exceptions``. One module
per section (``[model]``, ``[training]``, ``[privacy]``, ``[site_dp]``, ``[reconnect]``,
``[trainer]``, ``[guardrails]``, the update bounds, the data choice, ``[server]``/``[upstream]``);
``toml`` reads and validates a file, ``errors`` words pydantic's errors as
``"{file}: {section.key}: {message}"``, and ``writer`` writes mappings of sections back as TOML.
"""

from fedsov.config.backoff import Backoff
from fedsov.config.base import (
    Bool,
    ConfigPath,
    Int,
    KeyProblem,
    Number,
    Section,
    Str,
    fields_of,
    one_of,
    section,
    with_fields,
)
from fedsov.config.bounds import MAX_EXAMPLES, MAX_UPDATE_NORM, ExampleCap, NormBound
from fedsov.config.data import DATASETS, PARTITIONS, DataChoice, SimulationSpec
from fedsov.config.endpoint import (
    ClientEndpoint,
    ServerEndpoint,
    ServerTable,
    StreamLimits,
    TlsPaths,
    UpstreamTable,
)
from fedsov.config.guardrails import EVERY_JURISDICTION, GuardrailSettings
from fedsov.config.metrics import METRICS_ADDRESS, MetricsSettings
from fedsov.config.model import EvaluationConfig, ModelConfig
from fedsov.config.operator import OperatorFile, OperatorTable
from fedsov.config.privacy import SITE_ACCOUNTANTS, PrivacyConfig
from fedsov.config.secure import SecureAggregationSettings
from fedsov.config.simulation import BACKENDS, MODES, SimulationRuntime
from fedsov.config.site_dp import SiteDPSettings, adaptive_noise
from fedsov.config.strategy import StrategyConfig
from fedsov.config.toml import beside, load_toml, read_toml, validate
from fedsov.config.trainer import TRAINER_KINDS, TrainerConfig, UserConfig
from fedsov.config.training import TrainingPlan
from fedsov.config.writer import dump_toml, write_toml

__all__ = [
    "BACKENDS",
    "DATASETS",
    "EVERY_JURISDICTION",
    "MAX_EXAMPLES",
    "MAX_UPDATE_NORM",
    "METRICS_ADDRESS",
    "MODES",
    "PARTITIONS",
    "SITE_ACCOUNTANTS",
    "TRAINER_KINDS",
    "Backoff",
    "Bool",
    "ClientEndpoint",
    "ConfigPath",
    "DataChoice",
    "EvaluationConfig",
    "ExampleCap",
    "GuardrailSettings",
    "Int",
    "KeyProblem",
    "MetricsSettings",
    "ModelConfig",
    "NormBound",
    "Number",
    "OperatorFile",
    "OperatorTable",
    "PrivacyConfig",
    "Section",
    "SecureAggregationSettings",
    "ServerEndpoint",
    "ServerTable",
    "SimulationRuntime",
    "SimulationSpec",
    "SiteDPSettings",
    "Str",
    "StrategyConfig",
    "StreamLimits",
    "TlsPaths",
    "TrainerConfig",
    "TrainingPlan",
    "UpstreamTable",
    "UserConfig",
    "adaptive_noise",
    "beside",
    "dump_toml",
    "fields_of",
    "load_toml",
    "one_of",
    "read_toml",
    "section",
    "validate",
    "with_fields",
    "write_toml",
]
