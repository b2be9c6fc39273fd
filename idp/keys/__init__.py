"""Operating the signing key set: rotation, retirement, revocation and pruning (no Flask here)."""
