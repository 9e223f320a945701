"""hsirestore train cassi command (to be written)."""
