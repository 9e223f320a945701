"""hsirestore train hsivar command (to be written)."""
