"""hsirestore cassi command (to be written)."""
