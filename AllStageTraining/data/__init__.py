"""Data layer: case discovery, split files, preprocessing, the preprocessed-case cache and training crops."""
