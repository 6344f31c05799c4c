"""FIT-Connect, sender side (Submission API 1.1.3): the wire layer the ``fit-connect`` adapter uses.

- ``errors``   the FIT-Connect branches of the hub's error tree (``retry_after`` on transient ones)
- ``models``   pydantic models of what the Submission API answers (destination, JWK, event log, ...)
- ``metadata`` the project's own model of the metadata 1.0.0 subset the sender writes
- ``jose``     JWE encryption, validation of a destination's key, SET verification (joserfc)
- ``client``   the HTTP client: OAuth2 client credentials, status mapping into the error tree
- ``events``   event log -> delivery status (verified SETs)
- ``simulator`` a Submission API simulator for tests and the demo (its own subpackage)
"""
