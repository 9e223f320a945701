"""Model families. Each module takes and returns tensors only; see the registry for variants."""
