"""hsirestore simulate command (to be written)."""
