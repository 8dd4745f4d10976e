"""Commercial-98K toolkit: build video-to-background-music data sets from e-commerce ads."""

__version__ = "0.1.0"
