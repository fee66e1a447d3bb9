"""The analysis: what the captured events mean, independent of how they were read.

``events`` (the contract every engine fills) -> ``certificates`` / ``cert_table`` (X.509 and
trust) -> ``conversations`` (one row per SMTP/TLS conversation, its verdict) -> ``findings``
(rules, evidence frames, fixes; ``invariants`` keeps them true to their conversation).
``schema`` declares every table and vocabulary. Nothing here runs tshark or renders.
"""
