"""hsirestore rgb2hsi command (to be written)."""
