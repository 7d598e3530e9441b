"""Indicators: disaggregated counts of the hub's events, safe to publish.

The catalogue (``deploy/policy/indicators.toml``) says what is counted and who may
read it; counting is exact under redelivery; every table that leaves passes
primary and complementary small-cell suppression.
"""
