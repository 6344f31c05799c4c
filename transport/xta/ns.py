"""Namespaces, action URIs and qualified names of XTA 2 Version 3 (XTA-Webservice 2.1.1).

One place for the strings every XTA module shares, so a typo cannot make the client and the
simulator disagree silently.
"""

from __future__ import annotations

XTA = "http://xoev.de/transport/xta/211"
OSCIMETA = "http://www.osci.eu/ws/2014/10/transport"
WSA = "http://www.w3.org/2005/08/addressing"
SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
XENC = "http://www.w3.org/2001/04/xmlenc#"
DS = "http://www.w3.org/2000/09/xmldsig#"
XML = "http://www.w3.org/XML/1998/namespace"

# wsam:Action URIs from XTA.wsdl (request, response and declared faults share one URI).
ACTION_CHECK_ACCOUNT_ACTIVE = "http://www.xta.de/XTA/CheckAccountActive"
ACTION_CREATE_MESSAGE_ID = "http://www.xta.de/XTA/CreateMessageID"
ACTION_SEND_MESSAGE = "http://www.xta.de/XTA/SendMessage"
# WS-Addressing's generic fault action (faults that no WSDL operation declares).
ACTION_WSA_FAULT = "http://www.w3.org/2005/08/addressing/fault"
WSA_ANONYMOUS = "http://www.w3.org/2005/08/addressing/anonymous"

# errorCode list of the XTA fault details.
ERROR_CODE_LIST_URI = "urn:de:xta:webservice:codeliste:fehlernummer"
ERROR_CODE_LIST_VERSION = "1.0"

SOAP12_CONTENT_TYPE = "application/soap+xml"


def q(namespace: str, local: str) -> str:
    """Clark notation ``{ns}local`` as lxml uses it."""
    return f"{{{namespace}}}{local}"


NSMAP_ENVELOPE = {"soap-env": SOAP12, "wsa": WSA}
NSMAP_OSCIMETA = {"oscimeta": OSCIMETA, "wsa": WSA}
NSMAP_XTA = {"xta": XTA}
