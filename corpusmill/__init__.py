"""corpusmill: prepare the data a pre-trained language model is fine-tuned on."""

__version__ = "0.3.1"
