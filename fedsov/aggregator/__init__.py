"""The regional tier: an aggregator downstream, a participant upstream."""
