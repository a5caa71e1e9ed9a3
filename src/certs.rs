//! Development certificates: a CA and a server certificate with SANs, written as PEM files.
