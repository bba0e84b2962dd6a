"""Who is behind an update: what the receiver can prove, never a free header field.

A site's update counts that site (its certificate's name). A regional aggregator's
names the sites of its own receipts in a statement signed with the key of its mTLS
certificate over its audit head (``fedsov.audit.statement``); with a plan, they must
be edge sites below it. Without certificates (insecure mode) an update counts its
sender only.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace

from fedsov.audit.statement import verify_statement
from fedsov.exceptions import PKIError, ProtocolError
from fedsov.messages import UpdateHeader
from fedsov.pki.identity import NodeIdentity, Role, validate_name
from fedsov.policy.plan import Plan

__all__ = ["MAX_CONTRIBUTORS", "ContributorCheck"]

MAX_CONTRIBUTORS = 10_000
"""The most sites one update may name when no plan bounds its region."""


@dataclass(frozen=True)
class ContributorCheck:
    """Replaces an update's contributors by the ones its sender proved.

    Raises ProtocolError (INVALID_ARGUMENT on the wire) saying what is wrong.
    """

    federation: str
    plan: Plan | None = None

    def __call__(self, peer: NodeIdentity, header: UpdateHeader) -> UpdateHeader:
        if peer.certificate_der is None:  # insecure mode: nothing can be proven
            return replace(header, contributors=(peer.name,), contributors_signature="")
        if header.contributors_signature or peer.role is not Role.site:
            verify_statement(peer.certificate_der, self.federation, header)
        if peer.role is Role.site:
            return replace(header, contributors=self._site(peer, header.contributors))
        return replace(header, contributors=self._region(peer, header.contributors))

    @staticmethod
    def _site(peer: NodeIdentity, named: Sequence[str]) -> tuple[str, ...]:
        if tuple(named) not in ((), (peer.name,)):
            raise ProtocolError(
                f"site {peer.name!r} names contributors {_shown(named)}: a site's update "
                f"counts that site only; send contributors [{peer.name!r}] or none"
            )
        return (peer.name,)

    def _region(self, peer: NodeIdentity, named: Sequence[str]) -> tuple[str, ...]:
        if not named:
            raise ProtocolError(f"aggregator {peer.name!r} names no contributors")
        below = None if self.plan is None else {n.name for n in self.plan.edges_under(peer.name)}
        limit = MAX_CONTRIBUTORS if below is None else len(below)
        if len(named) > limit:
            raise ProtocolError(
                f"aggregator {peer.name!r} names {len(named)} contributors, at most {limit}"
            )
        twice = sorted(n for n, count in Counter(named).items() if count > 1)
        if twice:
            raise ProtocolError(f"aggregator {peer.name!r} names {_shown(twice)} twice")
        for name in named:
            try:
                validate_name(name, what="contributor name")
            except PKIError as exc:
                raise ProtocolError(f"aggregator {peer.name!r}: {exc}") from None
        outside = sorted(set(named) - below) if below is not None else []
        if outside:
            raise ProtocolError(
                f"aggregator {peer.name!r} names {_shown(outside)}: not sites below it in the plan"
            )
        return tuple(sorted(named))


def _shown(names: Sequence[str], most: int = 5) -> str:
    """A few names, quoted, for a message (a hostile list may be long)."""
    shown = ", ".join(repr(n[:64]) for n in list(names)[:most])
    more = len(names) - most
    return f"[{shown}{f', ... ({more} more)' if more > 0 else ''}]"
