"""Unit tests of the FIT-Connect simulator (transport/fitconnect/simulator)."""
