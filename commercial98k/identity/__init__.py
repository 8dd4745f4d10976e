"""Music identity and re-uploads: fingerprints (landmarks, Chromaprint), their indexes, the library."""
