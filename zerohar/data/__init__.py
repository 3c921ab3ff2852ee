"""Data layer: channels and layouts, recordings and window sets, transforms, folds, sources."""
