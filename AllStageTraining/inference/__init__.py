"""Inference: model bundles (safetensors + JSON) and the Predictor."""
