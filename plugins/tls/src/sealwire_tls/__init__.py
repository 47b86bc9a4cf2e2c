"""TLS 1.3 mutual-auth A2A over HTTPS binding for Sealwire."""
