"""safepoint: an embedded, transactional, crash-safe key-value state store."""
