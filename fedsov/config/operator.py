"""``operator.toml``: where an operator's `fedsov status` / `fedsov stop` dial, and with what."""

from __future__ import annotations

from fedsov.config.base import ConfigPath, Section, Str, section
from fedsov.config.endpoint import Address

__all__ = ["OperatorFile", "OperatorTable"]


@section
class OperatorTable(Section):
    """The node to ask (a coordinator or regional aggregator) and the operator's own
    certificate (role ``operator``), key and the federation CA."""

    address: Address  # host:port of the node's [server]
    cert: ConfigPath
    key: ConfigPath
    ca: ConfigPath
    server_name: Str | None = None  # the name its certificate carries (default: the host)


@section
class OperatorFile(Section):
    operator: OperatorTable
