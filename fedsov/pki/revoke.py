"""Certificate revocation: the CA's CRL and the check nodes make against it.

The CA operator revokes certificates into ``<ca-dir>/crl.pem`` (``fedsov pki revoke``),
a CRL signed by the CA that keeps every earlier revocation. Nodes read it from beside
their plan (``[federation] revocation_list``), verify it against their CA, and re-read
it whenever the file changes, so a revocation takes effect without a restart.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

from fedsov.exceptions import PKIError
from fedsov.pki._files import read_bytes, write_atomic
from fedsov.pki._keys import signing_hash
from fedsov.pki.ca import CertificateAuthority, load_ca
from fedsov.pki.identity import identity_from_certificate
from fedsov.pki.tls import TlsMaterial

__all__ = [
    "CRL_FILE",
    "DEFAULT_CRL_DAYS",
    "REASONS",
    "Revocation",
    "RevocationList",
    "load_crl",
    "open_revocation_list",
    "parse_reason",
    "parse_serial",
    "renew_crl",
    "revoke",
    "serial_of",
]

log = logging.getLogger("fedsov.pki")

CRL_FILE = "crl.pem"
DEFAULT_CRL_DAYS = 30

# The RFC 5280 reasons an operator may give (removeFromCRL belongs to delta CRLs).
REASONS = tuple(f.name for f in x509.ReasonFlags if f is not x509.ReasonFlags.remove_from_crl)
_ISSUER_KEYS = (
    dsa.DSAPublicKey,
    rsa.RSAPublicKey,
    ec.EllipticCurvePublicKey,
    ed25519.Ed25519PublicKey,
    ed448.Ed448PublicKey,
)


@dataclass(frozen=True)
class Revocation:
    """One certificate on the CRL; ``new`` is False when it was revoked before."""

    crl: Path
    serial: int
    date: dt.datetime
    reason: str | None
    new: bool


def parse_serial(text: str) -> int:
    """A serial number as ``fedsov pki show`` prints it: hex, colons and ``0x`` allowed."""
    digits = text.strip().lower().removeprefix("0x").replace(":", "")
    try:
        serial = int(digits, 16)
    except ValueError:
        raise PKIError(
            f"serial {text!r} is not a hex number (as `fedsov pki show` prints)"
        ) from None
    if serial < 1:
        raise PKIError(f"serial {text!r} must be positive")
    return serial


def parse_reason(text: str) -> x509.ReasonFlags:
    """The revocation reason named ``text`` (e.g. ``key_compromise``)."""
    if text not in REASONS:
        raise PKIError(f"unknown revocation reason {text!r}: expected one of {', '.join(REASONS)}")
    return x509.ReasonFlags[text]


def serial_of(cert_file: Path, ca: CertificateAuthority) -> int:
    """The serial of the certificate in ``cert_file``, which ``ca`` must have issued."""
    try:
        cert = x509.load_pem_x509_certificate(read_bytes(cert_file, "certificate"))
    except ValueError as exc:
        raise PKIError(f"certificate {cert_file}: not a valid PEM certificate ({exc})") from None
    try:
        cert.verify_directly_issued_by(ca.cert)
    except (ValueError, TypeError, InvalidSignature):
        raise PKIError(f"certificate {cert_file} was not issued by this CA") from None
    return cert.serial_number


def _verify(crl: x509.CertificateRevocationList, issuers: list[x509.Certificate]) -> None:
    """Raise PKIError unless one of ``issuers`` signed ``crl``."""
    for issuer in issuers:
        key = issuer.public_key()
        if (
            issuer.subject == crl.issuer
            and isinstance(key, _ISSUER_KEYS)
            and crl.is_signature_valid(key)
        ):
            return
    raise PKIError("it is not signed by this federation's CA")


def load_crl(
    path: Path, ca_pem: bytes, *, now: dt.datetime | None = None
) -> x509.CertificateRevocationList:
    """Read the CRL at ``path``; it must be signed by the CA in ``ca_pem`` and current."""
    try:
        crl = x509.load_pem_x509_crl(read_bytes(path, "revocation list"))
        _verify(crl, x509.load_pem_x509_certificates(ca_pem))
    except ValueError as exc:
        raise PKIError(f"revocation list {path}: not a valid PEM CRL ({exc})") from None
    except PKIError as exc:
        if str(exc).startswith("revocation list"):
            raise
        raise PKIError(
            f"revocation list {path}: {exc}; use the crl.pem of the CA that issued "
            "the federation's certificates"
        ) from None
    next_update = crl.next_update_utc
    if next_update is not None and (now or dt.datetime.now(dt.UTC)) > next_update:
        raise PKIError(
            f"revocation list {path} expired on {next_update:%Y-%m-%d %H:%M} UTC; the CA "
            "operator must re-issue it (`fedsov pki crl --ca-dir DIR`) and distribute it"
        )
    return crl


def _crl_number(crl: x509.CertificateRevocationList | None) -> int:
    if crl is None:
        return 0
    try:
        return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except x509.ExtensionNotFound:
        return 0


def _issue(
    ca: CertificateAuthority,
    revoked: list[x509.RevokedCertificate],
    *,
    number: int,
    days: int,
) -> x509.CertificateRevocationList:
    if days < 1:
        raise PKIError(f"revocation list validity must be at least 1 day, got {days}")
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.cert.subject)
        .last_update(now)
        .next_update(min(now + dt.timedelta(days=days), ca.cert.not_valid_after_utc))
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
    )
    for entry in revoked:
        builder = builder.add_revoked_certificate(entry)
    return builder.sign(ca.key, signing_hash(ca.key))


def _ca_crl(ca_dir: Path) -> tuple[CertificateAuthority, x509.CertificateRevocationList | None]:
    """The CA in ``ca_dir`` and its CRL so far (None before the first revocation)."""
    ca = load_ca(ca_dir)
    path = ca_dir / CRL_FILE
    if not path.exists():
        return ca, None
    ca_pem = ca.cert.public_bytes(serialization.Encoding.PEM)
    never = dt.datetime.min.replace(tzinfo=dt.UTC)  # an expired CRL is still extended
    try:
        return ca, load_crl(path, ca_pem, now=never)
    except PKIError as exc:
        raise PKIError(f"{exc} (move it away to start a new one)") from None


def _write(ca_dir: Path, crl: x509.CertificateRevocationList) -> Path:
    path = ca_dir / CRL_FILE
    write_atomic(path, crl.public_bytes(serialization.Encoding.PEM))
    return path


def _reason(entry: x509.RevokedCertificate) -> str | None:
    try:
        return str(entry.extensions.get_extension_for_class(x509.CRLReason).value.reason.name)
    except x509.ExtensionNotFound:
        return None


def revoke(
    ca_dir: Path,
    *,
    serial: int,
    reason: x509.ReasonFlags | None = None,
    days: int = DEFAULT_CRL_DAYS,
) -> Revocation:
    """Add ``serial`` to the CRL in ``ca_dir`` (created if absent), keeping earlier entries.

    Revoking a certificate again changes nothing and returns its first revocation.
    """
    ca, crl = _ca_crl(ca_dir)
    path = ca_dir / CRL_FILE
    earlier = crl.get_revoked_certificate_by_serial_number(serial) if crl is not None else None
    if earlier is not None:
        return Revocation(path, serial, earlier.revocation_date_utc, _reason(earlier), new=False)
    now = dt.datetime.now(dt.UTC)
    entry = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now)
    if reason is not None:
        entry = entry.add_extension(x509.CRLReason(reason), critical=False)
    revoked = [*(crl or []), entry.build()]
    _write(ca_dir, _issue(ca, revoked, number=_crl_number(crl) + 1, days=days))
    return Revocation(path, serial, now, reason.name if reason else None, new=True)


def renew_crl(ca_dir: Path, *, days: int = DEFAULT_CRL_DAYS) -> Path:
    """Re-issue the CRL in ``ca_dir`` with its entries and a new next-update (or an empty one)."""
    ca, crl = _ca_crl(ca_dir)
    return _write(ca_dir, _issue(ca, list(crl or []), number=_crl_number(crl) + 1, days=days))


class RevocationList:
    """A CA's CRL file, verified against the CA and re-read when the file changes.

    A changed file that does not verify is logged and the last good list is kept, so
    earlier revocations stay in force; the node stops only over a bad list at start.
    """

    def __init__(self, path: Path, ca_pem: bytes) -> None:
        self.path = path
        self._ca_pem = ca_pem
        self._stamp = self._stat()
        self._crl = load_crl(path, ca_pem)

    def _stat(self) -> tuple[int, int, int]:
        try:
            st = os.stat(self.path)
        except OSError:
            return (0, 0, 0)
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def _refresh(self) -> None:
        stamp = self._stat()
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            self._crl = load_crl(self.path, self._ca_pem)
        except PKIError as exc:
            log.error("%s; still enforcing the previous revocation list", exc)
            return
        log.info("revocation list %s reloaded: %d revoked", self.path, len(self._crl))

    def check(self, cert_der: bytes) -> None:
        """Raise PKIError if the certificate (DER) is revoked; names node, serial and date."""
        self._refresh()
        try:
            cert = x509.load_der_x509_certificate(cert_der)
        except ValueError as exc:
            raise PKIError(f"cannot parse certificate: {exc}") from None
        if cert.issuer != self._crl.issuer:
            return
        entry = self._crl.get_revoked_certificate_by_serial_number(cert.serial_number)
        if entry is None:
            return
        reason = _reason(entry)
        raise PKIError(
            f"the certificate of {_holder(cert)!r} (serial {cert.serial_number:x}) was revoked "
            f"on {entry.revocation_date_utc:%Y-%m-%d %H:%M:%S} UTC"
            + (f" ({reason})" if reason else "")
            + "; its holder needs a new certificate from the CA operator"
        )


def _holder(cert: x509.Certificate) -> str:
    try:
        return identity_from_certificate(cert).name
    except PKIError:
        return cert.subject.rfc4514_string()


def open_revocation_list(path: Path | None, *tls: TlsMaterial | None) -> RevocationList | None:
    """The CRL at ``path``, verified against the first TLS material's CA; raises PKIError
    (the node must stop) if it is bad or revokes any of these node certificates.

    None without a path, or without TLS (insecure mode has no certificates to revoke)."""
    materials = [t for t in tls if t is not None]
    if path is None:
        return None
    if not materials:
        log.warning("revocation list %s ignored: insecure mode has no certificates", path)
        return None
    revocation = RevocationList(path, materials[0].ca_pem)
    for material in materials:
        der = x509.load_pem_x509_certificate(material.cert_pem).public_bytes(
            serialization.Encoding.DER
        )
        try:
            revocation.check(der)
        except PKIError as exc:
            raise PKIError(f"this node cannot start: {exc} (revocation list {path})") from None
    return revocation
