"""TLS 1.3 channels over trio streams, TCP listener and dialer, identities."""
