"""edgeport: ship Hugging Face ViT classifiers to ONNX, SavedModel and TFLite, validated."""
__version__ = "0.1.0"
