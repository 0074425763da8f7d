"""AllStageTraining: brain-tumour segmentation from any subset of FLAIR, T1ce, T1 and T2.

Training (multimodal MAE, co-distillation with a CLIP-driven hyper-network), evaluation over the 15
availability scenarios, model bundles and inference. Run ``python -m AllStageTraining --help``.
"""

__version__ = "0.1.0"
