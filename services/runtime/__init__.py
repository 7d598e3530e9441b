"""Runtime kernel shared by every service: settings, broker, topics, metrics, logging."""
