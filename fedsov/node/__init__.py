"""The serving side shared by the coordinator and regional aggregators: the round
runner (``Engine``), one round's streaming and spooling (``rounds``), the state store
a restart resumes from, and the content-addressed model store."""

from fedsov.node.engine import Engine, EngineSettings, RoundReport, SiteResult
from fedsov.node.model import GlobalModel, ModelStore
from fedsov.node.state import MemoryStateStore, StateStore
from fedsov.node.state_sqlite import SqliteStateStore

__all__ = [
    "Engine",
    "EngineSettings",
    "GlobalModel",
    "MemoryStateStore",
    "ModelStore",
    "RoundReport",
    "SiteResult",
    "SqliteStateStore",
    "StateStore",
]
