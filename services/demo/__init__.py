"""``puente demo``: the hub end to end with simulated ministries and a live view."""
