"""Labelling: tags, category confidence, emotion data sets."""
