//! The HTTPS accept loop: per-connection TLS handshake under a timeout, HTTP/1.1 and HTTP/2, graceful drain.
