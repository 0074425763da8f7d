"""Networks: residual U-Net backbone, multimodal MAE with learned fill, hyper-network segmenter, text encoder."""
