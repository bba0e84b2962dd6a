"""TLS failures that retrying cannot heal, told apart from a peer that is just down,
and explained: a probe (Python ``ssl``, verification off) reads the certificate the
upstream presents, so the message can say which names it has and who issued it.

grpc 1.8x reports every connection failure as UNAVAILABLE; only its details differ:
``... Hostname Verification Check failed.``, ``... CERTIFICATE_VERIFY_FAILED: unable
to get local issuer certificate``, ``Tls handshake failed (TSI_PROTOCOL_FAILURE)``
versus ``Connection refused`` or ``Socket closed`` (down, restarting, or refusing our
certificate: TLS 1.3 tells a client that only by closing, so that one is retried).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import ssl
from dataclasses import dataclass
from enum import StrEnum

import grpc
from cryptography import x509

from fedsov.exceptions import PKIError
from fedsov.pki.identity import NodeIdentity, identity_from_certificate
from fedsov.pki.tls import TlsMaterial

__all__ = [
    "PeerCertificate",
    "TlsFailure",
    "classify",
    "explain",
    "probe_certificate",
    "split_address",
    "stop_reason",
]


class TlsFailure(StrEnum):
    """Why a TLS connection failed for good."""

    hostname = "hostname"  # the certificate does not name the host dialled
    certificate = "certificate"  # it does not verify against this node's CA
    handshake = "handshake"  # another TLS failure (no TLS on the other end, ...)


_MARKERS = (
    ("Hostname Verification Check failed", TlsFailure.hostname),
    ("CERTIFICATE_VERIFY_FAILED", TlsFailure.certificate),
    ("certificate verify failed", TlsFailure.certificate),
    ("Tls handshake failed", TlsFailure.handshake),
    ("TSI_PROTOCOL_FAILURE", TlsFailure.handshake),
    ("WRONG_VERSION_NUMBER", TlsFailure.handshake),
)


def classify(exc: grpc.aio.AioRpcError) -> TlsFailure | None:
    """The TLS failure behind ``exc``; None for anything retrying may heal."""
    if exc.code() is not grpc.StatusCode.UNAVAILABLE:
        return None
    details = exc.details() or ""
    return next((kind for marker, kind in _MARKERS if marker in details), None)


@dataclass(frozen=True)
class PeerCertificate:
    """What the certificate a server presents says, read without trusting it."""

    dns_names: tuple[str, ...]
    ips: tuple[str, ...]
    identity: NodeIdentity | None
    issuer: str
    not_valid_after: dt.datetime

    def names(self) -> str:
        listed = [f"DNS {n}" for n in self.dns_names] + [f"IP {ip}" for ip in self.ips]
        return ", ".join(listed) or "no DNS name or IP at all"

    def who(self) -> str:
        i = self.identity
        return "no fedsov identity" if i is None else f"{i.name}, role {i.role}, {i.jurisdiction}"


def split_address(address: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` too) as (host, port)."""
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def probe_certificate(address: str, *, sni: str | None, timeout: float = 5.0) -> PeerCertificate:
    """Read the certificate the server at ``address`` presents (blocking; OSError or
    ssl.SSLError when it cannot be reached). No client certificate is sent: under
    TLS 1.3 the server's certificate arrives before a client's is asked for."""
    host, port = split_address(address)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # only to read it: nothing is sent over this
    context.set_alpn_protocols(["h2"])
    with (
        socket.create_connection((host, port), timeout=timeout) as raw,
        context.wrap_socket(raw, server_hostname=sni or host) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    if der is None:
        raise ssl.SSLError("the server presented no certificate")
    return _read(x509.load_der_x509_certificate(der))


def _read(cert: x509.Certificate) -> PeerCertificate:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = tuple(san.get_values_for_type(x509.DNSName))
        ips = tuple(str(ip) for ip in san.get_values_for_type(x509.IPAddress))
    except (x509.ExtensionNotFound, ValueError):
        dns, ips = (), ()
    try:
        identity: NodeIdentity | None = identity_from_certificate(cert)
    except PKIError:
        identity = None
    return PeerCertificate(
        dns, ips, identity, cert.issuer.rfc4514_string(), cert.not_valid_after_utc
    )


def _our_ca(tls: TlsMaterial) -> str:
    try:
        roots = x509.load_pem_x509_certificates(tls.ca_pem)
    except ValueError:
        return "unreadable"
    return ", ".join(c.subject.rfc4514_string() for c in roots)


def explain(
    kind: TlsFailure,
    *,
    address: str,
    dialled: str,
    details: str,
    tls: TlsMaterial,
    peer: PeerCertificate | str,
) -> str:
    """What went wrong and what to fix; ``peer``: the probe's result, or why it failed."""
    if isinstance(peer, str):
        seen = f"(its certificate could not be read: {peer})"
    elif kind is TlsFailure.hostname:
        seen = f"its certificate ({peer.who()}) names {peer.names()}"
    else:
        seen = (
            f"its certificate ({peer.who()}) was issued by {peer.issuer} and is valid "
            f"until {peer.not_valid_after:%Y-%m-%d %H:%M} UTC"
        )
    if kind is TlsFailure.hostname:
        return (
            f"upstream {address}: TLS host name check failed: this node dialled the name "
            f"{dialled!r}, but {seen}. Set [upstream] server_name (or the address) to a "
            "name the certificate has, or reissue the upstream's certificate with "
            f"--host {dialled}"
        )
    if kind is TlsFailure.certificate:
        return (
            f"upstream {address}: its TLS certificate does not verify against this node's "
            f"CA ({_our_ca(tls)}): {seen}. Give this node the federation's ca.pem, or the "
            f"upstream a current certificate from it [{details}]"
        )
    return (
        f"upstream {address}: TLS handshake failed; {seen}. Is the upstream serving mTLS "
        f"(not insecure = true), with a certificate of this federation? [{details}]"
    )


async def stop_reason(
    exc: grpc.aio.AioRpcError, *, address: str, server_name: str | None, tls: TlsMaterial | None
) -> str | None:
    """Why a participant must stop rather than retry after ``exc``, with what to fix;
    None when retrying may heal it (or without TLS)."""
    kind = classify(exc)
    if kind is None or tls is None:
        return None
    dialled = server_name or split_address(address)[0]
    try:
        peer: PeerCertificate | str = await asyncio.to_thread(
            probe_certificate, address, sni=dialled
        )
    except (OSError, ValueError) as probe:  # ssl.SSLError is an OSError
        peer = str(probe) or type(probe).__name__
    return explain(
        kind, address=address, dialled=dialled, details=exc.details() or "", tls=tls, peer=peer
    )
