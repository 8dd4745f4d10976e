"""YuYin: multi-task, multi-modal background-music recommendation for e-commerce videos."""

__version__ = "0.1.0"
