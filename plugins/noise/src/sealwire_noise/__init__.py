"""Noise (XX, IK) live sessions for Sealwire over TCP, WebSocket and UDP."""
