"""hsirestore train mcga command (to be written)."""
