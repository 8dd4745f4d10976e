"""Media I/O through ffmpeg: probing, decoding audio and frames, writing WAV."""
