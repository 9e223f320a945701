"""hsirestore denoise command (to be written)."""
