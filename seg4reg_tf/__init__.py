"""seg4reg-tf: Seg4Reg+ in TensorFlow/Keras."""
__version__ = "0.1.0"
