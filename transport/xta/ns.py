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
OSCI = "http://www.osci.eu/ws/2008/05/transport"  # OSCI 2.0.2: MsgBox, X509TokenContainer
XOP = "http://www.w3.org/2004/08/xop/include"

# wsam:Action URIs from XTA.wsdl (request, response and declared faults share one URI).
ACTION_CHECK_ACCOUNT_ACTIVE = "http://www.xta.de/XTA/CheckAccountActive"
ACTION_CREATE_MESSAGE_ID = "http://www.xta.de/XTA/CreateMessageID"
ACTION_SEND_MESSAGE = "http://www.xta.de/XTA/SendMessage"
ACTION_SEND_MESSAGE_SYNC = "http://www.xta.de/XTA/SendMessageSync"
ACTION_LOOKUP_SERVICE = "http://www.xta.de/XTA/IsServiceAvailable"
ACTION_GET_TRANSPORT_REPORT = "http://www.xta.de/XTA/GetTransportReport"
ACTION_CANCEL_MESSAGE = "http://www.xta.de/XTA/CancelMessage"
_MSGBOX = "http://www.osci.eu/ws/2008/05/transport/urn/messageTypes/"
ACTION_GET_MESSAGE = _MSGBOX + "MsgBoxFetchRequest"
ACTION_GET_STATUS_LIST = _MSGBOX + "MsgBoxStatusListRequest"
ACTION_GET_NEXT_MESSAGE = _MSGBOX + "MsgBoxGetNextMsgRequest"
ACTION_GET_NEXT_STATUS_LIST = _MSGBOX + "MsgBoxGetNextListRequest"
ACTION_CLOSE = _MSGBOX + "MsgBoxCloseRequest"

# The three ports of XTA.wsdl: binding local name -> operations.
MANAGEMENT_OPERATIONS = ("checkAccountActive", "lookupService", "createMessageId", "getTransportReport",
                         "cancelMessage")
SEND_OPERATIONS = ("sendMessage", "sendMessageSync")
MSGBOX_OPERATIONS = ("getStatusList", "getMessage", "getNextMessage", "getNextStatusList", "close")
BINDINGS = {"managementHttpsBinding": MANAGEMENT_OPERATIONS, "sendXTAHttpsBinding": SEND_OPERATIONS,
            "msgBoxHttpsBinding": MSGBOX_OPERATIONS}
# wsa:Action -> operation name (requests, answers and declared faults share one URI per operation).
ACTIONS = {
    ACTION_CHECK_ACCOUNT_ACTIVE: "checkAccountActive",
    ACTION_LOOKUP_SERVICE: "lookupService",
    ACTION_CREATE_MESSAGE_ID: "createMessageId",
    ACTION_GET_TRANSPORT_REPORT: "getTransportReport",
    ACTION_CANCEL_MESSAGE: "cancelMessage",
    ACTION_SEND_MESSAGE: "sendMessage",
    ACTION_SEND_MESSAGE_SYNC: "sendMessageSync",
    ACTION_GET_STATUS_LIST: "getStatusList",
    ACTION_GET_MESSAGE: "getMessage",
    ACTION_GET_NEXT_MESSAGE: "getNextMessage",
    ACTION_GET_NEXT_STATUS_LIST: "getNextStatusList",
    ACTION_CLOSE: "close",
}
OPERATION_ACTIONS = {operation: action for action, operation in ACTIONS.items()}
# WS-Addressing's generic fault action (faults that no WSDL operation declares).
ACTION_WSA_FAULT = "http://www.w3.org/2005/08/addressing/fault"
WSA_ANONYMOUS = "http://www.w3.org/2005/08/addressing/anonymous"

# errorCode list of the XTA fault details.
ERROR_CODE_LIST_URI = "urn:de:xta:webservice:codeliste:fehlernummer"
ERROR_CODE_LIST_VERSION = "1.0"

SOAP12_CONTENT_TYPE = "application/soap+xml"
XOP_CONTENT_TYPE = "application/xop+xml"


def q(namespace: str, local: str) -> str:
    """Clark notation ``{ns}local`` as lxml uses it."""
    return f"{{{namespace}}}{local}"


NSMAP_ENVELOPE = {"soap-env": SOAP12, "wsa": WSA}
NSMAP_OSCIMETA = {"oscimeta": OSCIMETA, "wsa": WSA}
NSMAP_XTA = {"xta": XTA}
NSMAP_OSCI = {"osci": OSCI}
