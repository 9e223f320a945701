"""hsirestore info command (to be written)."""
