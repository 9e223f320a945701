"""hsirestore evaluate command (to be written)."""
