"""The trust boundary: the cluster CA and credentials, identities and roles, TLS contexts."""
