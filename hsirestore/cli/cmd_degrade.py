"""hsirestore degrade command (to be written)."""
