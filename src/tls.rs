//! TLS: the rustls server configuration and a certificate resolver that reloads PEM files.
