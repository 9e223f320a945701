"""hsirestore models command (to be written)."""
