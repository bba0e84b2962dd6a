"""The federation CA a provisioning uses: the operator's own (``--ca DIR``), or one made
in ``KITS/ca/``. Only its certificate goes into the kits; its key stays where it is."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fedsov.exceptions import PKIError
from fedsov.pki.ca import CA_CERT_FILE, CA_KEY_FILE, init_ca, load_ca
from fedsov.provision import layout

__all__ = ["FederationCA", "federation_ca"]


@dataclass(frozen=True)
class FederationCA:
    """The CA: its folder, its certificate's PEM, and whether provisioning made it now."""

    directory: Path
    cert_pem: bytes
    created: bool


def _loaded(directory: Path, federation: str) -> FederationCA:
    ca = load_ca(directory)  # the key must match the certificate
    if ca.federation != federation:
        raise PKIError(
            f"the CA in {directory} serves federation {ca.federation!r}, but the plan is "
            f"for {federation!r}: give the plan's CA (--ca), or `fedsov pki init` a new one"
        )
    return FederationCA(directory, (directory / CA_CERT_FILE).read_bytes(), False)


def federation_ca(out: Path, *, federation: str, ca_dir: Path | None) -> FederationCA:
    """The CA ``ca_dir``, else the one in ``out/ca`` (made now when there is none)."""
    if ca_dir is not None:
        return _loaded(ca_dir, federation)
    directory = out / layout.CA_DIR
    if (directory / CA_KEY_FILE).exists() or (directory / CA_CERT_FILE).exists():
        return _loaded(directory, federation)  # a provisioning before: never replace a key
    cert = init_ca(directory, federation=federation)
    return FederationCA(directory, cert.read_bytes(), True)
