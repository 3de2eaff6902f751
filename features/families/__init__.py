"""One module per feature family; each defines `FAMILY`, registered in `features.registry`."""
