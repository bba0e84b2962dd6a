"""What a node's kit folder holds, by name: the one place these file names are spelled.

Every path a kit's config names is relative to the kit folder, so a kit can be
copied anywhere. Key, CSR and certificate carry the node's name, as ``fedsov pki
csr`` and ``fedsov pki sign`` name them: the operator receives many CSRs and sends
many certificates back, and a named file cannot be mistaken for another node's.
"""

from __future__ import annotations

from pathlib import Path

from fedsov.pki.ca import CA_CERT_FILE, CA_KEY_FILE

__all__ = [
    "CA_CERT",
    "CA_DIR",
    "CA_KEY",
    "CONFIG",
    "DATA_DIR",
    "INDEX",
    "MANIFEST",
    "OPERATOR_CONFIG",
    "OUTPUT_DIR",
    "PLAN",
    "PORT_FILE",
    "README",
    "SCRIPT",
    "TEST_DATA",
    "cert_file",
    "csr_file",
    "data_file",
    "key_file",
]

CONFIG = "node.toml"  # the node's config: `fedsov <role> --config node.toml`
OPERATOR_CONFIG = "operator.toml"  # the operator kit's config (for `fedsov status`)
PLAN = "plan.toml"  # the federation plan, byte for byte: the same SHA-256 at every node
CA_CERT = CA_CERT_FILE  # the federation CA's certificate (never its key)
SCRIPT = "request-certificate.sh"  # makes the node's key and CSR, on the node
README = "README.md"
OUTPUT_DIR = "out"  # a server's state, models, audit trail and summary
PORT_FILE = "port"  # written by a server listening on port 0: the port it bound
DATA_DIR = "data"
TEST_DATA = f"{DATA_DIR}/test.npz"  # held-out set of the evaluating nodes (--demo-data)

# The kits folder itself
INDEX = "README.md"  # who runs what, and in which order
MANIFEST = "kits.json"  # the same as data, for scripts and tests
CA_DIR = "ca"  # a CA made by provision: the consortium operator's, never shipped
CA_KEY = CA_KEY_FILE


def key_file(name: str) -> str:
    """The node's private key, as ``fedsov pki csr`` writes it (mode 0600, never leaves)."""
    return f"{name}.key"


def csr_file(name: str) -> str:
    """The node's CSR, as ``fedsov pki csr`` writes it: what travels to the operator."""
    return f"{name}.csr.pem"


def cert_file(name: str) -> str:
    """The node's certificate, as ``fedsov pki sign`` writes it by default."""
    return f"{name}.pem"


def data_file(name: str) -> Path:
    """A site's training data: a placeholder path its operator points at its own data."""
    return Path(DATA_DIR) / f"{name}.npz"
