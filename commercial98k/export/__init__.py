"""From a labelled manifest to training data: train/val/test partition, filters, shards, reports."""
