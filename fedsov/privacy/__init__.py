"""Privacy accounting: accountants by name, noise calibration, the sites' privacy
ledgers, the regions' site-level ledgers and budgets, and the ε report over them."""

from fedsov.privacy.accountant import (
    ACCOUNTANTS,
    Accountant,
    MechanismStep,
    compute_epsilon,
    create_accountant,
)
from fedsov.privacy.calibrate import calibrate_noise, epsilon
from fedsov.privacy.ledger import PrivacyLedger
from fedsov.privacy.region import RegionBudget
from fedsov.privacy.report import privacy_report
from fedsov.privacy.site_level import SiteLevelLedger, SiteRound

__all__ = [
    "ACCOUNTANTS",
    "Accountant",
    "MechanismStep",
    "PrivacyLedger",
    "RegionBudget",
    "SiteLevelLedger",
    "SiteRound",
    "calibrate_noise",
    "compute_epsilon",
    "create_accountant",
    "epsilon",
    "privacy_report",
]
