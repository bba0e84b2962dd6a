"""A test that attacks: a curious upstream replays a site's DP-SGD round to find a record.

Threat (DESIGN.md, threat model): the upstream is honest-but-curious. It knows every config
value of the site (its ``seed``, the hyper-parameters, the DP settings), the round seed it
sent, the global model it sent, and every field it receives back (the weights, hence the
delta; ``num_examples``, ``steps``, ``sample_rate``, ``epsilon``). It wants to tell whether
the site trained on ``D`` or on a neighbouring ``D'``.

Neighbours: fedsov accounts privacy for REPLACE-ONE neighbours with ``N`` public, so ``D'``
is ``D`` with one record (the canary, row 0) replaced by a different one (other features,
other label), and both have the same ``N``. Every public field of a round is then the same
for ``D`` and ``D'`` (checked below); only the weights can tell them apart.

Attack: the attacker calls :class:`DPTrainer` exactly as the site would (same config seed,
same round seed, same global model) once on ``D`` and once on ``D'`` and guesses the
candidate whose replay lies closer to the weights the site sent. When DP randomness
derives from public values (the old trainer, or ``FEDSOV_INSECURE_REPRODUCIBLE=1``) the
right replay is bit-identical to the observed weights and the attacker always wins, however
large ε says the noise is. With secret randomness its accuracy must stay within what DP
allows, which for the settings here is indistinguishable from a coin flip.

Set-up: one full-batch step (q = 1, so every record is in the batch and no subsampling
amplification is involved) with a large noise multiplier. Under replace-one the sensitivity
of the clipped sum is 2C, so the round is exactly the Gaussian mechanism with
μ = 2 / σ (μ-GDP): the best possible attacker's accuracy is Φ(μ / 2).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from scipy.optimize import brentq
from scipy.stats import norm
from torch import nn

from fedsov.config import PrivacyConfig, TrainingPlan
from fedsov.randomness import REPRODUCIBLE_ENV
from fedsov.simulation.datasets import load_digits
from fedsov.site.data import Dataset
from fedsov.site.trainer import DPTrainer, TrainResult

N = 32  # records at the site (public)
SIGMA = 50.0  # noise multiplier
CLIP = 1.0
DELTA = 1e-5
LR = 1.0
SITE_SEED = 20_261_201  # the site's config seed: the upstream knows it
HARNESS_SEED = 7  # the test's own coin flips and global models, not the site's randomness

SECURE_TRIALS = 200
# |acc - 0.5| <= 4.5 standard errors of a fair coin: a false failure has probability
# about 7e-6 at accuracy 0.5, and stays under 1e-4 up to the true bound (see below).
SECURE_BAND = 4.5 * math.sqrt(0.25 / SECURE_TRIALS)  # 0.159
INSECURE_TRIALS = 40  # the attack wins every time or not at all: a few trials show which

# Replace-one μ of the round: one Gaussian release of sensitivity 2C with noise σC.
MU = 2.0 / SIGMA  # 0.04
TIGHT_BOUND = float(norm.cdf(MU / 2))  # 0.508: the best any attacker can do


def _gdp_epsilon(mu: float, delta: float) -> float:
    """ε at ``delta`` of a μ-GDP mechanism (Dong, Roth and Su 2019, Corollary 2.13)."""

    def gap(eps: float) -> float:
        return float(norm.cdf(-eps / mu + mu / 2) - math.exp(eps) * norm.cdf(-eps / mu - mu / 2))

    return float(brentq(lambda e: gap(e) - delta, 0.0, 50.0))


# ε = 0.125 at δ = 1e-5 (replace-one), so an (ε, δ)-DP round lets no attacker exceed
# (e^ε + δ) / (1 + e^ε) = 0.531 accuracy: well inside 0.5 ± 0.159. At the tight bound 0.508
# the chance of leaving the band is about 2e-5.
EPSILON = _gdp_epsilon(MU, DELTA)
EPS_BOUND = (math.exp(EPSILON) + DELTA) / (1 + math.exp(EPSILON))


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """A 650-parameter model gains nothing from intra-op threads; on a busy 2-core machine
    their spinning made each round ~25x slower (80 ms instead of 3 ms)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def neighbours() -> tuple[Dataset, Dataset]:
    """``D`` (32 digits) and ``D'``: row 0 replaced by a record not in ``D`` (another digit,
    inverted, with another label), so the two differ in one record and have the same N."""
    digits = load_digits()
    d = digits.subset(np.arange(N))
    x, y = d.x.copy(), d.y.copy()
    x[0], y[0] = 1.0 - digits.x[N], (d.y[0] + 5) % 10
    assert y[0] != d.y[0] and not np.array_equal(x[0], d.x[0])
    return d, Dataset(x, y)


def site_round(
    data: Dataset, global_weights: dict[str, np.ndarray], round_seed: int
) -> TrainResult:
    """One round as the site runs it; the attacker's replays call exactly this too."""
    model = nn.Linear(64, 10)
    model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in global_weights.items()})
    trainer = DPTrainer(
        data=data,
        train=TrainingPlan(local_epochs=1, batch_size=N, learning_rate=LR),
        privacy=PrivacyConfig(
            noise_multiplier=SIGMA, max_grad_norm=CLIP, delta=DELTA, accountant="pld"
        ),
        device="cpu",
        seed=SITE_SEED,
    )
    return trainer.train_round(model, round_seed=round_seed)


def _distance(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    return math.sqrt(sum(float(np.sum((a[k] - b[k]).astype(np.float64) ** 2)) for k in a))


def _public(r: TrainResult) -> tuple[object, ...]:
    return (r.num_examples, r.steps, r.total_steps, r.sample_rate, r.epsilon, r.delta)


def attack_accuracy(neighbours: tuple[Dataset, Dataset], trials: int) -> tuple[float, float]:
    """(the fraction of trials in which the replaying upstream names the right dataset,
    the ε the site reported). Each trial is a round of its own: round seed, global model."""
    d, d_prime = neighbours
    harness = np.random.default_rng(HARNESS_SEED)
    correct, epsilon = 0, math.nan
    for _ in range(trials):
        b = int(harness.integers(2))  # 1: the site holds D; 0: it holds D'
        round_seed = int(harness.integers(2**62))
        global_weights = {
            "weight": harness.normal(0, 0.1, (10, 64)).astype(np.float32),
            "bias": np.zeros(10, np.float32),
        }
        observed = site_round(d if b else d_prime, global_weights, round_seed)
        # The attacker: replay the round on both candidates with the seeds it knows.
        on_d = site_round(d, global_weights, round_seed)
        on_d_prime = site_round(d_prime, global_weights, round_seed)
        assert _public(observed) == _public(on_d) == _public(on_d_prime)
        assert observed.steps == 1 and observed.sample_rate == 1.0
        gap = _distance(observed.weights, on_d_prime.weights) - _distance(
            observed.weights, on_d.weights
        )
        guess = int(harness.integers(2)) if gap == 0 else int(gap > 0)
        correct += guess == b
        epsilon = observed.epsilon
    return correct / trials, epsilon


def test_parameters_make_the_dp_bound_small() -> None:
    assert TIGHT_BOUND <= EPS_BOUND < 0.5 + SECURE_BAND / 2
    # Leaving the band from the tight bound takes more than 4 standard errors.
    assert (0.5 + SECURE_BAND - TIGHT_BOUND) / math.sqrt(0.25 / SECURE_TRIALS) > 4.0


def test_replay_attack_fails_with_secret_randomness(
    neighbours: tuple[Dataset, Dataset], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(REPRODUCIBLE_ENV, raising=False)
    acc, reported = attack_accuracy(neighbours, SECURE_TRIALS)
    print(
        f"\nreplay attack, secret randomness: accuracy {acc:.3f} over {SECURE_TRIALS} trials "
        f"(allowed 0.5 ± {SECURE_BAND:.3f}; DP bound {TIGHT_BOUND:.3f} tight, "
        f"{EPS_BOUND:.3f} from ε = {EPSILON:.3f} replace-one; site reported ε = {reported:.3f})"
    )
    assert abs(acc - 0.5) <= SECURE_BAND
    # The site reports the replace-one ε of the round (dp-accounting's PLD, pessimistic).
    assert EPSILON * (1 - 1e-6) <= reported <= EPSILON * 1.01


def test_replay_attack_wins_with_public_seeds(
    neighbours: tuple[Dataset, Dataset], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The control: with reproducible DP randomness the same attack wins, so it is real."""
    monkeypatch.setenv(REPRODUCIBLE_ENV, "1")
    acc, reported = attack_accuracy(neighbours, INSECURE_TRIALS)
    print(
        f"\nreplay attack, {REPRODUCIBLE_ENV}=1: accuracy {acc:.3f} over {INSECURE_TRIALS} "
        f"trials (site reported ε = {reported:.3f}, as with secret randomness)"
    )
    assert acc >= 0.95
