"""The commands a kit hands out: make the key and CSR on the node, sign it at the operator's,
start the node. Each is an argv (for scripts and tests) and a shell line (for READMEs)."""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from fedsov.pki.identity import Role
from fedsov.provision import layout

__all__ = ["csr_argv", "request_script", "shell", "sign_argv", "start_argv"]


def csr_argv(
    name: str, *, role: Role, jurisdiction: str, federation: str, hosts: Sequence[str] = ()
) -> list[str]:
    """``fedsov pki csr`` for the node, run in its kit: ``<name>.key`` and ``<name>.csr.pem``."""
    argv = ["fedsov", "pki", "csr", "--name", name, "--role", role.value]
    argv += ["--jurisdiction", jurisdiction, "--federation", federation]
    for host in hosts:
        argv += ["--host", host]
    return [*argv, "--out-dir", "."]


def sign_argv(ca_dir: str, name: str, *, kit: str) -> list[str]:
    """``fedsov pki sign`` as the operator runs it in the kits folder, for the kit ``kit``."""
    csr, cert = f"{kit}/{layout.csr_file(name)}", f"{kit}/{layout.cert_file(name)}"
    return ["fedsov", "pki", "sign", "--ca-dir", ca_dir, "--csr", csr, "--out", cert]


def start_argv(role: Role) -> list[str]:
    """The node's own command, run in its kit folder."""
    return ["fedsov", role.value, "--config", layout.CONFIG]


def shell(argv: Sequence[str]) -> str:
    """``argv`` as one shell line."""
    return shlex.join(argv)


def request_script(name: str, argv: Sequence[str]) -> str:
    """``request-certificate.sh``: the CSR command, run in the kit folder wherever it is called."""
    return (
        "#!/bin/sh\n"
        f"# Run on {name}'s own machine: makes {layout.key_file(name)} (the private key; it\n"
        f"# never leaves this folder) and {layout.csr_file(name)} (send that to the consortium\n"
        "# operator). It refuses to replace a key that already exists.\n"
        "set -eu\n"
        'cd "$(dirname "$0")"\n'
        f"{shell(argv)}\n"
    )
