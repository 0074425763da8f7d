"""Synthetic BraTS-style cases built on the MNI152 anatomy shipped by nilearn."""
