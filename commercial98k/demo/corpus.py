"""Plan and generate a small Commercial-style corpus of ad-like videos over real music.

How the music is paired with the pictures (and why retrieval has something to learn)
-----------------------------------------------------------------------------------
Real e-commerce ads choose their background music by product category and by the pace of
the edit (the observation Commercial-98K and YuYin build on): sports and gadget ads cut
fast to energetic, beat-driven (often electronic) tracks; beauty, jewellery and baby ads
hold long, soft shots over tender or calm acoustic music; food and pet ads are cheerful;
home and books lean calm and nostalgic. Editors then cut the pictures to the music: the
faster the music, the shorter the shots. Brands and shops reuse trending tracks, so the
same track appears in several ads, within and across categories.

The generator follows the same rules, documented per category in ``STYLES``:

==================  =====================  ===========  ==========================================
category            moods (weight)         sound        pictures
==================  =====================  ===========  ==========================================
sports_outdoor      energetic 3, happy 1   electronic   fast cuts, saturated greens/oranges
digital             energetic 2, calm 1    electronic   fast-medium cuts, dark blue/cyan, patterns
apparel             happy 2, energetic 1   either       medium-fast cuts, bold fashion palette
food                happy 3, nostalgic 1   acoustic     medium cuts, warm reds/yellows
pets                happy 2, tender 1      acoustic     medium cuts, friendly pastels
cosmetics           tender 2, calm 1       acoustic     slow cuts, pink/rose gold gradients
jewelry_acc.        calm 2, nostalgic 1    acoustic     slow cuts, black/gold, sparkle fractal
mother_baby         tender 3, happy 1      acoustic     slow cuts, soft pastels
home                calm 2, nostalgic 1    acoustic     slow cuts, wood/beige
health              calm 2, tender 1       acoustic     slow cuts, clean white/green
automotive          energetic 2, nostal. 1 electronic   medium-fast cuts, steel/red
books_stationery    nostalgic 2, calm 1    acoustic     slow cuts, paper/ink
==================  =====================  ===========  ==========================================

A video's shot length is set from its track's energy (``music.MOOD_ENERGY``), scaled by
the category's pace: mean shot = ``4.2 - 3.2 * energy`` seconds times ``pace``, jittered
per shot. Each category draws a *playlist* (two fifths as many tracks as it has videos, at
least three) from its mood pool, so a track is reused by two or three ads. A track already in
another category's playlist is drawn only when the pool has nothing else (weight x0.05): a
shop's playlist is its own, and heavy cross-category reuse would fuse categories into one
track group, which the grouped train/val/test split then cannot stratify by category. Like real ads, every ad that uses
a track starts it at the same point (its hook, ``track_hook``), so reuse is audible and a
fingerprint finds it.

Each video has silent stretches at its start and end, often a spoken voice-over (espeak-ng)
over the ducked music or alone before the music starts, product-like shapes, price and
slogan text overlays (DejaVu font) and hard cuts between shots of different colours.
Everything is decided by ``plan_corpus`` from a seed; ``render.render_video`` draws it.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import asdict, dataclass, field

from .music import Track

PLAN_VERSION = 2


@dataclass(frozen=True)
class CategoryStyle:
    """How ads of one category look and which music they use."""

    moods: dict[str, int]  # mood -> weight
    sound: str  # preferred track style: acoustic | electronic | either
    pace: float  # multiplies the mean shot length (< 1: faster cuts)
    palette: tuple[str, ...]  # hex colours, alternated between shots
    backgrounds: tuple[str, ...]  # lavfi sources: gradient, solid, mandelbrot, cellauto, life
    product: str  # shape drawn: bottle, box, phone, ring, shoe, bowl, ...
    nouns: tuple[str, ...]
    slogans: tuple[str, ...]
    price_range: tuple[int, int]
    vertical: float = 0.3  # share of vertical (9:16) videos


STYLES: dict[str, CategoryStyle] = {
    "sports_outdoor": CategoryStyle({"energetic": 3, "happy": 1}, "electronic", 0.8,
                                    ("#1db954", "#ff6f00", "#0d47a1", "#212121"), ("gradient", "life", "solid"),
                                    "shoe", ("Running Shoes", "Yoga Mat", "Trail Backpack", "Sports Bottle"),
                                    ("Go further", "Beat your best", "Built to move"), (19, 129), 0.5),
    "digital": CategoryStyle({"energetic": 2, "calm": 1}, "electronic", 0.9,
                             ("#0a1931", "#00e5ff", "#6200ea", "#eeeeee"), ("cellauto", "gradient", "solid"),
                             "phone", ("Wireless Earbuds", "Smartphone X", "Smart Watch", "Laptop Pro"),
                             ("Smarter every day", "Pure sound", "All-day battery"), (49, 999), 0.2),
    "apparel": CategoryStyle({"happy": 2, "energetic": 1}, "either", 0.9,
                             ("#e91e63", "#ffeb3b", "#3f51b5", "#fafafa"), ("gradient", "solid"),
                             "shirt", ("Summer Dress", "Denim Jacket", "Street Sneakers", "Linen Shirt"),
                             ("New season looks", "Wear your style", "Made for you"), (15, 89), 0.6),
    "food": CategoryStyle({"happy": 3, "nostalgic": 1}, "acoustic", 1.0,
                          ("#d32f2f", "#ffc107", "#6d4c41", "#fff8e1"), ("gradient", "solid"),
                          "bowl", ("Crispy Snacks", "Cold Brew Coffee", "Fruit Juice", "Dark Chocolate"),
                          ("Taste the joy", "Fresh every morning", "So delicious"), (2, 25), 0.4),
    "pets": CategoryStyle({"happy": 2, "tender": 1}, "acoustic", 1.0,
                          ("#ffb74d", "#81d4fa", "#a5d6a7", "#5d4037"), ("gradient", "solid"),
                          "bowl", ("Cat Food", "Dog Treats", "Cat Litter", "Pet Bed"),
                          ("Happy pets", "Made with love", "Their favourite"), (5, 45), 0.4),
    "cosmetics": CategoryStyle({"tender": 2, "calm": 1}, "acoustic", 1.2,
                               ("#f8bbd0", "#b76e79", "#fce4ec", "#880e4f"), ("gradient", "solid"),
                               "bottle", ("Velvet Lipstick", "Hydrating Serum", "Night Cream", "Rose Perfume"),
                               ("Glow naturally", "Your skin deserves more", "Beauty in every drop"), (12, 68), 0.6),
    "jewelry_accessories": CategoryStyle({"calm": 2, "nostalgic": 1}, "acoustic", 1.3,
                                         ("#000000", "#d4af37", "#37474f", "#f5f5f5"), ("mandelbrot", "gradient"),
                                         "ring", ("Diamond Ring", "Gold Necklace", "Silver Bracelet", "Classic Watch"),
                                         ("Timeless elegance", "Shine forever", "A gift to remember"), (99, 1999), 0.3),
    "mother_baby": CategoryStyle({"tender": 3, "happy": 1}, "acoustic", 1.2,
                                 ("#b3e5fc", "#fff9c4", "#f8bbd0", "#c8e6c9"), ("gradient", "solid"),
                                 "box", ("Baby Formula", "Soft Diapers", "Baby Stroller", "Plush Toy"),
                                 ("Gentle care", "Sweet dreams, little one", "Safe and soft"), (9, 299), 0.4),
    "home": CategoryStyle({"calm": 2, "nostalgic": 1}, "acoustic", 1.2,
                          ("#8d6e63", "#efebe9", "#4e342e", "#a1887f"), ("gradient", "solid"),
                          "box", ("Oak Sofa", "Table Lamp", "Robot Vacuum", "Storage Box"),
                          ("Feel at home", "Comfort by design", "Your cosy corner"), (19, 899), 0.2),
    "health": CategoryStyle({"calm": 2, "tender": 1}, "acoustic", 1.1,
                            ("#e8f5e9", "#2e7d32", "#ffffff", "#00897b"), ("gradient", "solid"),
                            "bottle", ("Vitamin C", "Protein Powder", "Fish Oil", "Massage Gun"),
                            ("Feel your best", "Daily wellness", "Strong from within"), (9, 149), 0.3),
    "automotive": CategoryStyle({"energetic": 2, "nostalgic": 1}, "electronic", 0.9,
                                ("#b71c1c", "#90a4ae", "#263238", "#eceff1"), ("gradient", "cellauto", "solid"),
                                "box", ("Dash Cam", "Car Vacuum", "Seat Covers", "Tire Inflator"),
                                ("Drive further", "Ready for the road", "Engineered for you"), (19, 259), 0.2),
    "books_stationery": CategoryStyle({"nostalgic": 2, "calm": 1}, "acoustic", 1.2,
                                      ("#fff3e0", "#3e2723", "#1a237e", "#ffe0b2"), ("gradient", "solid"),
                                      "book", ("Leather Notebook", "Fountain Pen", "Classic Novel", "Sketchbook"),
                                      ("Write your story", "Read more", "Ideas on paper"), (3, 49), 0.3),
}

DEFAULT_CATEGORIES = ("sports_outdoor", "digital", "food", "cosmetics", "jewelry_accessories", "mother_baby")
LANDSCAPE = (320, 240)
PORTRAIT = (240, 426)
FPS = 25
MIN_SHOT_S = 0.7


@dataclass
class Shot:
    """One shot: its span and what it shows."""

    start_s: float
    end_s: float
    background: str
    color: str
    accent: str
    product_color: str
    text: str
    product_x: float  # product position as a share of the width


@dataclass
class VideoPlan:
    """Everything needed to render one video, and its ground truth."""

    file: str  # file name in the catalog folder
    category: str
    title: str
    description: str
    tags: list[str]
    duration_s: float
    width: int
    height: int
    fps: int
    track_id: str
    track_mood: str
    track_style: str
    track_energy: float
    music_offset_s: float  # where in the track the music starts
    music_start_s: float  # music span in the video
    music_end_s: float
    voice_text: str | None
    voice_start_s: float | None
    voice_voice: str
    shots: list[Shot] = field(default_factory=list)
    seed: int = 0

    def plan_hash(self) -> str:
        """A hash of the plan (what must be re-rendered when it changes)."""
        blob = json.dumps(asdict(self), sort_keys=True).encode()
        return hashlib.sha256(blob + f"v{PLAN_VERSION}".encode()).hexdigest()[:16]

    def cut_times(self) -> list[float]:
        """Times of the hard cuts between shots."""
        return [s.start_s for s in self.shots[1:]]


def _weighted(rng: random.Random, weights: dict[str, float]) -> str:
    keys = sorted(weights)
    return rng.choices(keys, weights=[weights[k] for k in keys], k=1)[0]


def _track_weight(track: Track, style: CategoryStyle) -> float:
    w = float(style.moods.get(track.mood, 0))
    if w and style.sound != "either":
        w *= 2.0 if track.style == style.sound else 0.5
    return w


#: Weight factor of a track that another category's playlist already holds.
TAKEN_WEIGHT = 0.05


def choose_playlist(rng: random.Random, tracks: list[Track], style: CategoryStyle, size: int,
                    taken: frozenset[str] | set[str] = frozenset()) -> list[Track]:
    """Draw ``size`` distinct tracks for a category, weighted by mood and sound; ``taken`` tracks
    (other categories' playlists) are drawn only as a last resort."""
    pool = {t.track_id: _track_weight(t, style) * (TAKEN_WEIGHT if t.track_id in taken else 1.0) for t in tracks}
    pool = {k: w for k, w in pool.items() if w > 0}
    if not pool:
        raise ValueError(f"no track in the library matches moods {sorted(style.moods)}")
    by_id = {t.track_id: t for t in tracks}
    chosen: list[Track] = []
    while pool and len(chosen) < size:
        tid = _weighted(rng, pool)
        chosen.append(by_id[tid])
        del pool[tid]
    return chosen


def track_hook(track: Track) -> float:
    """Where ads start the track: its hook, the same for every ad that uses it (0 or 4 s in)."""
    return 4.0 if int(hashlib.sha1(track.track_id.encode()).hexdigest(), 16) % 2 else 0.0


def plan_shots(rng: random.Random, duration: float, energy: float, style: CategoryStyle) -> list[tuple[float, float]]:
    """Shot spans covering ``[0, duration]``; faster music and pace give shorter shots."""
    mean = max(MIN_SHOT_S + 0.2, (4.2 - 3.2 * energy) * style.pace)
    spans, t = [], 0.0
    while t < duration:
        d = max(MIN_SHOT_S, rng.lognormvariate(0, 0.25) * mean)
        end = min(duration, round(round((t + d) * FPS) / FPS, 2))  # cuts fall on frame boundaries
        if duration - end < MIN_SHOT_S:
            end = duration
        spans.append((round(t, 2), end))
        t = end
    return spans


def plan_video(rng: random.Random, category: str, index: int, track: Track, quick: bool) -> VideoPlan:
    """Plan one ad of ``category`` over ``track``."""
    style = STYLES[category]
    duration = round(round((rng.uniform(8.0, 14.0) if quick else rng.uniform(10.0, 26.0)) * FPS) / FPS, 2)
    width, height = PORTRAIT if rng.random() < style.vertical else LANDSCAPE
    lead, tail = round(rng.uniform(0.5, 1.0), 2), round(rng.uniform(0.5, 1.0), 2)
    noun = rng.choice(style.nouns)
    slogan = rng.choice(style.slogans)
    price = rng.randint(*style.price_range) + 0.99
    voice_mode = rng.choices(["over", "intro", "none"], weights=[0.45, 0.25, 0.3])[0]
    voice_text = f"{noun}. {slogan}. Now only {int(price)} dollars." if voice_mode != "none" else None
    music_start = lead + (round(rng.uniform(2.2, 3.0), 2) if voice_mode == "intro" else 0.0)
    music_end = round(duration - tail, 2)
    span = music_end - music_start
    hook = track_hook(track)
    offset = hook if hook + span <= track.duration_s - 1.0 else 0.0
    voice_start = None
    if voice_mode == "intro":
        voice_start = lead
    elif voice_mode == "over":
        voice_start = round(rng.uniform(music_start + 1.0, max(music_start + 1.0, music_end - 4.0)), 2)
    spans = plan_shots(rng, duration, track.energy, style)
    texts = [noun, f"${price:.2f}", slogan, f"{rng.choice((20, 30, 40, 50))}% OFF", "Shop now"]
    shots = []
    n_colors = len(style.palette)
    for i, (s, e) in enumerate(spans):
        others = [c for j, c in enumerate(style.palette) if j != i % n_colors]
        accent, product_color = rng.sample(others, 2)
        shots.append(Shot(s, e, rng.choice(style.backgrounds), style.palette[i % n_colors], accent, product_color,
                          texts[i % len(texts)], round(rng.uniform(0.2, 0.8), 2)))
    tags = [category, noun.lower(), "advertisement", "#" + noun.replace(' ', '').lower()]
    return VideoPlan(
        file=f"{category}-{index:03d}.mp4", category=category,
        title=f"{noun} - {slogan} | {int(price)}.99 today",
        description=f"{slogan}. {noun} from our {category.replace('_', ' ')} collection. #{category}",
        tags=tags, duration_s=duration, width=width, height=height, fps=FPS,
        track_id=track.track_id, track_mood=track.mood, track_style=track.style, track_energy=track.energy,
        music_offset_s=offset, music_start_s=round(music_start, 2), music_end_s=music_end,
        voice_text=voice_text, voice_start_s=voice_start,
        voice_voice=rng.choice(["en-us", "en-us+f3", "en-gb", "en-us+m3", "en-gb+f2"]),
        shots=shots, seed=rng.randrange(2**31),
    )


def plan_corpus(tracks: list[Track], categories: list[str] | tuple[str, ...] = DEFAULT_CATEGORIES,
                videos_per_category: int = 12, seed: int = 0, quick: bool = False,
                playlist_size: int | None = None) -> list[VideoPlan]:
    """Plan every video: the same arguments always give the same plans.

    ``playlist_size``: tracks per category (default two fifths of its videos, at least three).
    """
    unknown = [c for c in categories if c not in STYLES]
    if unknown:
        raise ValueError(f"no demo style for {', '.join(unknown)}; known: {', '.join(STYLES)}")
    plans = []
    taken: set[str] = set()
    for category in categories:
        rng = random.Random(f"{seed}-{category}")
        size = playlist_size or max(3, 2 * videos_per_category // 5)
        playlist = choose_playlist(rng, tracks, STYLES[category], size, taken)
        taken.update(t.track_id for t in playlist)
        for i in range(videos_per_category):
            track = playlist[i % len(playlist)] if i < len(playlist) else rng.choice(playlist)
            plans.append(plan_video(rng, category, i, track, quick))
    return plans


def plan_from_dict(d: dict) -> VideoPlan:
    """Rebuild a ``VideoPlan`` from its JSON form (``asdict``)."""
    d = dict(d)
    d["shots"] = [Shot(**s) for s in d.get("shots", [])]
    d.pop("plan_hash", None)
    d.pop("sha256", None)
    return VideoPlan(**{k: v for k, v in d.items() if k in VideoPlan.__dataclass_fields__})
