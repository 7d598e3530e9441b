"""Key lifecycle: the production rule for keys, hub-key rotation, data-subject keys.

`environment` is imported by every service that loads a key; `cli` holds
``puente keys ...`` and ``puente subject-key``.
"""
