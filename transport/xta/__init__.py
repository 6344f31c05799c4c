"""XTA 2 Version 3 (XTA-Webservice 2.1.1): client, wire format and a simulator server.

- ``metadata``   MessageMetaData as data (Party, MessageType, BusinessScenario)
- ``soap``       MessageMetaData / Author / WS-Addressing headers <-> XML, SOAP 1.2 envelope helpers
- ``container``  xta:ContentContainer / GenericContentContainer <-> ``transport.content.Content``
- ``faults``     XTA error codes; SOAP faults -> ``XtaFault`` (and rendering for the simulator)
- ``client``     ``XtaClient`` (zeep, one per endpoint, thread-safe) and ``XtaEndpoint``
- ``simulator``  ``serve(SimulatorConfig)`` -> a running XTA server with a JSON inspection API

Nothing is imported here, so importing the metadata does not load zeep or werkzeug.
"""
