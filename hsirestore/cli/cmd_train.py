"""hsirestore train command (to be written)."""
