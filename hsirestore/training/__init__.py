"""Training: datasets over ../shared/data, losses and loops per model stage."""
