"""MLS (RFC 9420) group binding and engine for Sealwire."""
