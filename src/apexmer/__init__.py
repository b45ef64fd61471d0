"""apexmer: facial micro-expression recognition, from a clip to a label, with honest LOSO."""

__version__ = "0.1.0"
