"""The benchmark's methods by role, and how tables, plots and the method card name them."""

from __future__ import annotations

from .emotion_input import EMOTION_INPUTS

BASELINES = ("cca", "cbvmr", "contrastive")
ABLATIONS = ("yuyin-no-wfm", "yuyin-no-emotion", "yuyin-no-video-music", "yuyin-no-video-tag",
             "yuyin-no-music-tag", "yuyin-no-category")
EMOTION_RUNS = tuple(EMOTION_INPUTS)  # (oracle, shuffled)
STAT_METHODS = (*BASELINES, "yuyin", *ABLATIONS, *EMOTION_RUNS)
LOCO_METHODS = ("cbvmr", "contrastive", "yuyin", "yuyin-no-category")
LABELS = {"yuyin-no-wfm": "YuYin without WFM (concatenation)", "yuyin-no-emotion": "YuYin without emotion (audio only)",
          "yuyin-no-video-music": "YuYin without the video-music pair", "yuyin-no-video-tag":
          "YuYin without the video-tag pair", "yuyin-no-music-tag": "YuYin without the music-tag pair",
          "yuyin-no-category": "YuYin without the category task", "yuyin": "**YuYin**", "cca": "CCA",
          "cbvmr": "CBVMR (triplet)", "contrastive": "contrastive (video-music InfoNCE)",
          "yuyin-oracle-emotion": "YuYin, oracle emotion (true mood)",
          "yuyin-shuffled-emotion": "YuYin, shuffled emotion (no information)"}
