"""Simulated ministries: reproducible, realistic traffic for demo, bench and tests."""
