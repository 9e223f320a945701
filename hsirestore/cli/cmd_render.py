"""hsirestore render command (to be written)."""
