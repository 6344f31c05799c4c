"""XTA 2 Version 3 (XTA-Webservice 2.1.1): client, wire format and a simulator server (docs/xta.md).

- ``metadata``   MessageMetaData, TransportReport, lookup results, status lists as data
- ``mmd``        oscimeta:MessageMetaData <-> data; ``soap``: Author/WS-Addressing headers, envelopes
- ``wire``       lookupService, TransportReport, X509TokenContainer and MsgBox bodies <-> data
- ``container``  xta:ContentContainer / GenericContentContainer <-> ``transport.content.Content``
- ``mtom``       MTOM/XOP: multipart/related packaging (streamed) and parsing
- ``e2e``        end-to-end encrypted container with the ciphertext as an XOP part (streamed)
- ``faults``     THE error-code table; SOAP faults -> ``XtaFault`` (and rendering for the simulator)
- ``tls``        mutual TLS: client identity, CA bundle, server contexts (test PKI: tests/support/testtls.py)
- ``client``     ``XtaClient`` (ManagementPort + SendXtaPort, one per endpoint, thread-safe)
- ``msgbox``     ``MsgBoxClient`` (MsgBoxPort: status lists, fetch, close)
- ``simulator/`` subpackage: ``serve(SimulatorConfig)`` -> a running XTA server (all three ports, fault
  injection, inspection API); ``simulator.cli`` the command line. Nothing outside it imports it but
  tests, benchmarks and ``hub simulator``

Nothing is imported here, so importing the metadata does not load zeep or werkzeug.
"""
