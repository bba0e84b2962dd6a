"""A site's side of one secure round (SecAgg+, Bell et al. CCS 2020).

1. ``keys``: fresh X25519 keys (one to seal shares, one for pairwise masks) and a
   commitment to a fresh self-mask seed b.
2. ``share``: given its neighbours' keys, Shamir-share b and the mask key t-of-(k+1)
   among the neighbours and itself, each neighbour's shares sealed (AES-GCM) under a
   key agreed with it: the aggregator relays only ciphertext.
3. ``accept_shares``: open what the neighbours sealed for this site; those that sent
   shares are the ones it masks with.
4. ``mask``: clip, quantize, add the self-mask and ± each pairwise mask.
5. ``reveal``: for each share held, the self-mask share of a survivor or the mask-key
   share of one that dropped, never both for one site; nothing below the threshold.

It refuses what a hostile aggregator could use: a neighbour list it cannot be sure
of, shares not sealed for it, survivor lists under the threshold or that move.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Mapping, Sequence

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from fedsov.codec import EncodedTensors, Manifest, TensorSpec, allocate
from fedsov.codec.payload import sha256_hex
from fedsov.exceptions import ProtocolError, SecureAggregation
from fedsov.messages import RevealedShare, SealedShare, SecAggKeys, SecAggParams
from fedsov.secagg import keys as kx
from fedsov.secagg.prg import CHUNK_ELEMENTS, MaskStream, add_mask
from fedsov.secagg.quantize import RING_DTYPES, clip_factor, quantize_into
from fedsov.secagg.shamir import SHARE_BYTES, split

__all__ = ["TAIL_TENSOR", "SiteRound", "masked_manifest", "share_aad"]

TAIL_TENSOR = "secagg.within_clip"  # one element: 1 if the update was within the clip
MAX_NEIGHBOURS = 512
_X_BYTES = 2


def masked_manifest(model: Manifest, bits: int) -> Manifest:
    """What a masked update looks like: the model's tensors as ring elements, then the
    within-clip count."""
    dtype = f"uint{bits}"
    tensors = [TensorSpec(t.name, dtype, t.shape) for t in model.tensors]
    return Manifest((*tensors, TensorSpec(TAIL_TENSOR, dtype, (1,))))


def share_aad(round: int, owner: str, holder: str) -> bytes:
    return f"|share|{round}|{owner}|{holder}".encode()


class SiteRound:
    def __init__(self, name: str, params: SecAggParams, *, round: int) -> None:
        if params.ring_bits not in RING_DTYPES:
            raise ProtocolError(f"secure aggregation: ring_bits must be 32 or 64, got {params}")
        if not 2 <= params.threshold <= MAX_NEIGHBOURS + 1 or params.clip <= 0:
            raise ProtocolError(f"secure aggregation: unusable parameters {params}")
        self.name = name
        self.params = params
        self.round = round
        self._cipher = X25519PrivateKey.generate()
        self._mask = X25519PrivateKey.generate()
        self._seed = secrets.token_bytes(32)  # the self-mask seed b
        self._neighbours: dict[str, SecAggKeys] = {}
        self._own: tuple[bytes, bytes] | None = None  # this site's shares of its own secrets
        self._held: dict[str, tuple[bytes, bytes]] = {}  # owner -> (b share, mask-key share)
        self._revealed = False

    def keys(self) -> SecAggKeys:
        return SecAggKeys(
            name=self.name,
            cipher_key=kx.public_bytes(self._cipher),
            mask_key=kx.public_bytes(self._mask),
            commitment=kx.commit(self._seed, round=self.round, site=self.name),
        )

    def share(self, neighbours: Sequence[SecAggKeys]) -> tuple[SealedShare, ...]:
        """Seal this site's shares for each of ``neighbours`` (they are also whom it masks
        with, if they share back)."""
        t = self.params.threshold
        names = [n.name for n in neighbours]
        if len(set(names)) != len(names) or self.name in names:
            raise ProtocolError("secure aggregation: the neighbour list repeats a site")
        k = self.params.neighbours + self.params.neighbours % 2  # graph.py rounds an odd k up
        if not t - 1 <= len(names) <= min(MAX_NEIGHBOURS, max(k, t - 1)):
            raise SecureAggregation(
                f"secure aggregation: {len(names)} neighbours given, this round needs "
                f"{t - 1} to {k} (threshold {t})",
                code="secagg-bad-graph",
            )
        self._neighbours = {n.name: n for n in neighbours}
        holders = sorted([*names, self.name])
        seeds = split(self._seed, threshold=t, holders=len(holders))
        masks = split(kx.private_bytes(self._mask), threshold=t, holders=len(holders))
        sealed = []
        for x, (holder, b, s) in enumerate(zip(holders, seeds, masks, strict=True), start=1):
            if holder == self.name:
                self._own = (b, s)
                continue
            key = kx.agree(
                self._cipher,
                self._neighbours[holder].cipher_key,
                info=kx.share_info(self.round, self.name, holder),
            )
            plaintext = x.to_bytes(_X_BYTES, "big") + b + s
            aad = share_aad(self.round, self.name, holder)
            sealed.append(SealedShare(holder, kx.seal(key, plaintext, aad=aad)))
        return tuple(sealed)

    def accept_shares(self, shares: Sequence[SealedShare]) -> None:
        """Open the shares the neighbours sealed for this site."""
        held: dict[str, tuple[bytes, bytes]] = {}
        for sealed in shares:
            owner = self._neighbours.get(sealed.peer)
            if owner is None or sealed.peer in held:
                raise ProtocolError(f"secure aggregation: unexpected shares from {sealed.peer!r}")
            key = kx.agree(
                self._cipher,
                owner.cipher_key,
                info=kx.share_info(self.round, owner.name, self.name),
            )
            plain = kx.open_sealed(
                key, sealed.ciphertext, aad=share_aad(self.round, owner.name, self.name)
            )
            if len(plain) != _X_BYTES + 2 * SHARE_BYTES:
                raise ProtocolError("secure aggregation: a share of the wrong size")
            b = plain[_X_BYTES : _X_BYTES + SHARE_BYTES]
            held[owner.name] = (b, plain[_X_BYTES + SHARE_BYTES :])
        self._held = held

    @property
    def sharers(self) -> list[str]:
        """The neighbours whose shares this site holds: the ones it masks with."""
        return sorted(self._held)

    def mask(
        self, delta: Mapping[str, np.ndarray], model: Manifest, *, weight: int
    ) -> EncodedTensors:
        """``delta`` clipped, weighted, quantized and masked: the payload to upload."""
        p = self.params
        if self._own is None:
            raise RuntimeError("mask() comes after share()")
        if weight < 1:
            raise ValueError(f"an update's weight is at least 1, got {weight}")
        shapes = {k: tuple(np.shape(v)) for k, v in delta.items()}
        if shapes != {t.name: tuple(t.shape) for t in model.tensors}:
            raise ValueError("the update's tensors must be the model's, in name and shape")
        squared = sum(
            float(np.dot(v.ravel(), v.ravel().astype(np.float64))) for v in delta.values()
        )
        norm = math.sqrt(squared)
        scale = weight * clip_factor(norm, p.clip) * 2.0**p.precision_bits / p.clip
        manifest = masked_manifest(model, p.ring_bits)
        payload, views = allocate(manifest)
        flat = np.frombuffer(payload, dtype=RING_DTYPES[p.ring_bits])
        rng = np.random.default_rng(secrets.randbits(128))
        for spec in model.tensors:
            values = np.asarray(delta[spec.name]).reshape(-1)
            out = views[spec.name].reshape(-1)
            for at in range(0, len(values), CHUNK_ELEMENTS):
                part = values[at : at + CHUNK_ELEMENTS]
                quantize_into(part, out[at : at + len(part)], scale=scale, rng=rng)
        views[TAIL_TENSOR][0] = int(norm <= p.clip)
        stream = MaskStream(flat.dtype)
        add_mask(flat, stream, self._seed, start=0, sign=+1)
        for name in self.sharers:
            seed = kx.agree(
                self._mask,
                self._neighbours[name].mask_key,
                info=kx.pair_info(self.round, self.name, name),
            )
            add_mask(flat, stream, seed, start=0, sign=+1 if self.name < name else -1)
        return EncodedTensors(manifest, payload, sha256_hex(payload))

    def reveal(self, survivors: Sequence[str], dropped: Sequence[str]) -> tuple[RevealedShare, ...]:
        """The shares the aggregator needs to remove the masks: once per round."""
        alive, gone = set(survivors), set(dropped)
        if self._revealed:
            raise ProtocolError("secure aggregation: this site revealed its shares already")
        if alive & gone or self.name not in alive:
            raise ProtocolError("secure aggregation: inconsistent survivor list")
        if len(alive) < self.params.threshold:
            raise SecureAggregation(
                f"secure aggregation: {len(alive)} survivors, below the threshold "
                f"{self.params.threshold}: no share is revealed",
                code="secagg-too-few-survivors",
            )
        if self._own is None:
            raise RuntimeError("reveal() comes after share()")
        self._revealed = True
        reveals = [RevealedShare(self.name, False, self._own[0])]
        for owner, (b, s) in sorted(self._held.items()):
            if owner in alive:
                reveals.append(RevealedShare(owner, False, b))
            elif owner in gone:
                reveals.append(RevealedShare(owner, True, s))
        return tuple(reveals)
