"""hsirestore demo command (to be written)."""
