"""``fedsov pki``: create a CA, make CSRs, sign them, inspect and revoke certificates."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from rich.console import Console
from rich.markup import escape

from fedsov.cli.errors import fail
from fedsov.exceptions import PKIError
from fedsov.pki._files import read_bytes
from fedsov.pki.ca import init_ca, load_ca
from fedsov.pki.csr import make_csr
from fedsov.pki.identity import Role, identity_from_certificate
from fedsov.pki.revoke import (
    DEFAULT_CRL_DAYS,
    REASONS,
    parse_reason,
    parse_serial,
    renew_crl,
    revoke,
    serial_of,
)
from fedsov.pki.sign import sign_csr, write_certificate

__all__ = ["app"]

app = typer.Typer(
    help="Federation CA, CSRs and node certificates (keys never leave the node).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
out = Console(soft_wrap=True, highlight=False)


@app.command("init")
def init_cmd(
    directory: Annotated[Path, typer.Option("--dir", help="Directory for ca.key and ca.pem.")],
    federation: Annotated[str, typer.Option("--federation", help="Federation name.")],
    days: Annotated[int, typer.Option("--days", help="CA validity in days.")] = 3650,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing CA.")] = False,
) -> None:
    """Create the federation CA (run once, on the operator's machine)."""
    try:
        cert = init_ca(directory, federation=federation, days=days, force=force)
    except PKIError as exc:
        raise fail(exc) from None
    out.print(f"[green]CA for federation {federation!r} written:[/] {escape(str(cert))}")
    out.print(f"keep {escape(str(directory / 'ca.key'))} secret (mode 0600)")


@app.command("csr")
def csr_cmd(
    *,
    name: Annotated[str, typer.Option("--name", help="Node name.")],
    role: Annotated[Role, typer.Option("--role", help="Node role.")],
    jurisdiction: Annotated[str, typer.Option("--jurisdiction", help="e.g. EU, IN, US.")],
    federation: Annotated[str, typer.Option("--federation", help="Federation name.")],
    host: Annotated[
        list[str] | None, typer.Option("--host", help="DNS name or IP it serves on (repeat).")
    ] = None,
    out_dir: Annotated[Path, typer.Option("--out-dir", help="Where key and CSR go.")] = Path(),
    force: Annotated[bool, typer.Option("--force", help="Replace an existing key.")] = False,
) -> None:
    """Generate this node's private key and a CSR to send to the CA operator."""
    try:
        key, csr = make_csr(
            out_dir,
            name=name,
            role=role,
            jurisdiction=jurisdiction,
            federation=federation,
            hosts=host or (),
            force=force,
        )
    except PKIError as exc:
        raise fail(exc) from None
    out.print(f"[green]private key:[/] {escape(str(key))} (stays here)")
    out.print(f"[green]CSR:[/] {escape(str(csr))} (send this to the CA operator)")


def _default_out(csr: Path) -> Path:
    name = csr.name.removesuffix(".pem").removesuffix(".csr")
    return csr.with_name(f"{name}.pem")


@app.command("sign")
def sign_cmd(
    ca_dir: Annotated[Path, typer.Option("--ca-dir", help="Directory holding the CA.")],
    csr: Annotated[Path, typer.Option("--csr", help="CSR file (PEM).")],
    out_path: Annotated[
        Path | None, typer.Option("--out", help="Certificate file [default: <name>.pem].")
    ] = None,
    days: Annotated[int, typer.Option("--days", help="Validity in days.")] = 365,
) -> None:
    """Check a CSR and issue its certificate."""
    target = out_path or _default_out(csr)
    try:
        ca = load_ca(ca_dir)
        data = read_bytes(csr, "CSR")
        try:
            cert = sign_csr(ca, data, days=days)
        except PKIError as exc:
            raise PKIError(f"CSR {csr}: {exc}") from None
        write_certificate(target, cert)
        identity = identity_from_certificate(cert)
    except PKIError as exc:
        raise fail(exc) from None
    out.print(
        f"[green]issued[/] {identity.name} ({identity.role}, {identity.jurisdiction}) "
        f"until {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC: {escape(str(target))}"
    )


@app.command("show")
def show_cmd(cert_file: Annotated[Path, typer.Argument(help="Certificate file (PEM).")]) -> None:
    """Print a certificate's identity, SANs, validity and issuer."""
    try:
        try:
            cert = x509.load_pem_x509_certificate(read_bytes(cert_file, "certificate"))
        except ValueError as exc:
            raise PKIError(
                f"certificate {cert_file}: not a valid PEM certificate ({exc})"
            ) from None
    except PKIError as exc:
        raise fail(exc) from None
    out.print(f"[bold]{escape(str(cert_file))}[/]")
    try:
        identity = identity_from_certificate(cert)
    except PKIError as exc:
        out.print(f"  identity:     [yellow]none[/] ({escape(str(exc))})")
    else:
        out.print(f"  name:         {identity.name}")
        out.print(f"  role:         {identity.role}")
        out.print(f"  jurisdiction: {identity.jurisdiction}")
        out.print(f"  federation:   {identity.federation}")
    try:
        sans = [
            str(v.value)
            for v in cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        ]
    except x509.ExtensionNotFound:
        sans = []
    out.print(f"  subject:      {escape(cert.subject.rfc4514_string())}")
    out.print(f"  SANs:         {escape(', '.join(sans)) or '-'}")
    out.print(f"  valid from:   {cert.not_valid_before_utc:%Y-%m-%d %H:%M:%S} UTC")
    out.print(f"  valid until:  {cert.not_valid_after_utc:%Y-%m-%d %H:%M:%S} UTC")
    out.print(f"  issuer:       {escape(cert.issuer.rfc4514_string())}")
    out.print(f"  serial:       {cert.serial_number:x}")
    out.print(f"  sha256:       {cert.fingerprint(hashes.SHA256()).hex(':')}")


@app.command("revoke")
def revoke_cmd(
    ca_dir: Annotated[Path, typer.Option("--ca-dir", help="Directory holding the CA.")],
    cert: Annotated[Path | None, typer.Option("--cert", help="Certificate file (PEM).")] = None,
    serial: Annotated[
        str | None, typer.Option("--serial", help="Serial in hex, as `pki show` prints it.")
    ] = None,
    reason: Annotated[
        str | None, typer.Option("--reason", help=f"One of: {', '.join(REASONS)}.")
    ] = None,
    days: Annotated[
        int, typer.Option("--days", help="Days until the CRL's next update.")
    ] = DEFAULT_CRL_DAYS,
) -> None:
    """Revoke a certificate into <ca-dir>/crl.pem (kept: earlier revocations stay)."""
    try:
        if (cert is None) == (serial is None):
            raise PKIError("name the certificate to revoke: give --cert FILE or --serial HEX")
        number = serial_of(cert, load_ca(ca_dir)) if cert is not None else parse_serial(str(serial))
        flag = parse_reason(reason) if reason is not None else None
        done = revoke(ca_dir, serial=number, reason=flag, days=days)
    except PKIError as exc:
        raise fail(exc) from None
    why = f" ({done.reason})" if done.reason else ""
    verb = "revoked" if done.new else "already revoked"
    out.print(
        f"[green]{verb}[/] serial {done.serial:x} on {done.date:%Y-%m-%d %H:%M:%S} UTC{why}: "
        f"{escape(str(done.crl))}"
    )
    if done.new:
        out.print("copy it beside each node's plan (its [federation] revocation_list)")


@app.command("crl")
def crl_cmd(
    ca_dir: Annotated[Path, typer.Option("--ca-dir", help="Directory holding the CA.")],
    days: Annotated[
        int, typer.Option("--days", help="Days until the CRL's next update.")
    ] = DEFAULT_CRL_DAYS,
) -> None:
    """(Re-)issue <ca-dir>/crl.pem with its revocations and a new next-update date."""
    try:
        path = renew_crl(ca_dir, days=days)
    except PKIError as exc:
        raise fail(exc) from None
    out.print(f"[green]revocation list issued, valid {days} days:[/] {escape(str(path))}")
