"""Visual category evidence: what the frames show, as a distribution over the taxonomy.

* ``efficientnet-lite0`` (the default frame model) is an ImageNet-1k classifier. Its class
  probabilities, averaged over a clip's frames, are mapped to categories in one of two ways:

  - ``table`` (default): ``IMAGENET_TABLE`` below lists, per category, the ImageNet classes that
    are its products (lipstick, lotion, perfume -> cosmetics; running shoe, jersey -> apparel ...).
    A category's score is the probability mass of its classes. The mapped mass (the share of
    the frames' probability that falls on any listed class) is the evidence's *strength*.
  - ``embedding``: every ImageNet class name and every category description is embedded with
    the text model; a class goes to categories by a softmax over cosine similarities. All 1000
    classes contribute (no hand-made list), weighted by how close their name is to a category.

  ``benchmarks/labels.py`` measures both on a labelled manifest.
* ``clip`` (``--frame-model clip``): CLIP zero-shot: the frame embeddings are compared with the
  text embeddings of ``"an advertisement for <category keywords>"`` prompts (same CLIP model).

A distribution of ``None`` means "no visual evidence" (e.g. nothing mapped above ``MIN_MASS``).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from ..taxonomy import Taxonomy

IMAGENET_NAMES = Path(__file__).resolve().parent.parent / "data" / "imagenet_classes.txt"
MIN_MASS = 0.02  # mapped probability mass below this is "no visual evidence"
EMBED_TEMPERATURE = 0.05
CLIP_TEMPERATURE = 0.01
METHODS = ("table", "embedding")

#: Category -> ImageNet-1k class names (exact names of ``data/imagenet_classes.txt``).
IMAGENET_TABLE: dict[str, tuple[str, ...]] = {
    "cosmetics": ("lipstick", "lotion", "perfume", "face powder", "sunscreen", "hair spray", "soap dispenser",
                  "hair slide", "wig"),
    "apparel": ("running shoe", "jersey", "sweatshirt", "cardigan", "jean", "miniskirt", "overskirt", "gown",
                "hoopskirt", "kimono", "trench coat", "fur coat", "suit", "Loafer", "sandal", "cowboy boot",
                "sock", "brassiere", "bikini", "maillot", "swimming trunks", "Windsor tie", "bow tie",
                "cowboy hat", "sombrero", "purse", "backpack", "mailbag", "shoe shop", "abaya", "poncho",
                "pajama", "lab coat", "apron", "sunglasses", "sunglass", "wallet"),
    "food": ("pizza", "cheeseburger", "hotdog", "bagel", "pretzel", "French loaf", "ice cream", "ice lolly",
             "espresso", "cup", "coffee mug", "red wine", "wine bottle", "beer bottle", "beer glass",
             "pop bottle", "water bottle", "eggnog", "chocolate sauce", "trifle", "guacamole", "consomme",
             "hot pot", "potpie", "burrito", "meat loaf", "carbonara", "plate", "soup bowl", "mashed potato",
             "strawberry", "orange", "lemon", "banana", "pineapple", "Granny Smith", "bakery", "grocery store",
             "dough", "pomegranate", "fig"),
    "digital": ("laptop", "notebook", "cellular telephone", "desktop computer", "monitor", "screen",
                "television", "computer keyboard", "mouse", "hand-held computer", "iPod", "loudspeaker",
                "reflex camera", "Polaroid camera", "remote control", "modem", "printer", "joystick",
                "microphone", "projector", "CD player", "cassette player", "tape player", "radio",
                "dial telephone", "pay-phone", "lens cap", "space bar", "typewriter keyboard"),
    "home": ("studio couch", "rocking chair", "folding chair", "dining table", "desk", "four-poster",
             "china cabinet", "wardrobe", "bookcase", "table lamp", "lampshade", "vacuum", "dishwasher",
             "refrigerator", "microwave", "toaster", "espresso maker", "washer", "stove", "Dutch oven",
             "Crock Pot", "frying pan", "wok", "teapot", "coffeepot", "quilt", "pillow", "shower curtain",
             "window shade", "bathtub", "tub", "mixing bowl", "plate rack", "chiffonier", "cradle"),
    "mother_baby": ("diaper", "crib", "bassinet", "teddy", "bib", "toyshop",
                    "pinwheel", "tricycle", "jigsaw puzzle"),
    "sports_outdoor": ("soccer ball", "basketball", "volleyball", "tennis ball", "rugby ball", "golf ball",
                       "ping-pong ball", "baseball", "football helmet", "racket", "dumbbell", "barbell",
                       "mountain bike", "bicycle-built-for-two", "unicycle", "mountain tent", "sleeping bag",
                       "ski", "snorkel", "paddle", "canoe", "parallel bars", "horizontal bar", "balance beam",
                       "punching bag", "puck", "ballplayer", "scuba diver", "bathing cap"),
    "jewelry_accessories": ("necklace", "digital watch", "analog clock", "stopwatch", "chain", "bolo tie", "wall clock", "digital clock", "buckle"),
    "pets": ("tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat", "golden retriever",
             "Labrador retriever", "German shepherd", "pug", "Chihuahua", "Pomeranian", "Samoyed",
             "toy poodle", "miniature poodle", "standard poodle", "beagle", "French bulldog", "Shih-Tzu",
             "Yorkshire terrier", "Border collie", "Pembroke", "Siberian husky", "Maltese dog",
             "Labrador retriever", "hamster", "goldfish"),
    "health": ("pill bottle", "syringe", "stethoscope", "Band Aid", "medicine chest", "neck brace",
               "oxygen mask", "gasmask"),
    "automotive": ("sports car", "convertible", "limousine", "minivan", "jeep", "beach wagon", "cab", "racer",
                   "pickup", "Model T", "car wheel", "grille", "car mirror", "disk brake", "tow truck",
                   "moving van", "police van", "golfcart", "go-kart", "ambulance", "trailer truck"),
    "books_stationery": ("book jacket", "comic book", "binder", "ballpoint", "fountain pen", "quill",
                         "pencil box", "pencil sharpener", "rubber eraser", "rule", "envelope", "library",
                         "bookshop", "slide rule", "crossword puzzle", "menu"),
}


@lru_cache(maxsize=1)
def imagenet_names() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names in the standard class order."""
    names = tuple(line.strip() for line in IMAGENET_NAMES.read_text(encoding="utf-8").splitlines() if line.strip())
    if len(names) != 1000:
        raise ValueError(f"{IMAGENET_NAMES}: {len(names)} names, expected 1000")
    return names


def table_matrix(category_ids: list[str], table: dict[str, tuple[str, ...]] | None = None) -> np.ndarray:
    """``[1000, C]`` 0/1 matrix: ImageNet class -> category (a class listed twice counts for its first)."""
    table = IMAGENET_TABLE if table is None else table
    index = {n: i for i, n in enumerate(imagenet_names())}
    m = np.zeros((1000, len(category_ids)), np.float64)
    for c, cid in enumerate(category_ids):
        for name in table.get(cid, ()):
            if name not in index:
                raise KeyError(f"IMAGENET_TABLE[{cid!r}]: {name!r} is not an ImageNet class name")
            if not m[index[name]].any():
                m[index[name], c] = 1.0
    return m


def embedding_matrix(text_model, taxonomy: Taxonomy, temperature: float = EMBED_TEMPERATURE) -> np.ndarray:
    """``[1000, C]`` soft map: softmax over cosine similarities of class names and category texts."""
    names = [f"a photo of a {n}" for n in imagenet_names()]
    a = _unit(text_model.embed_texts(names))
    b = _unit(text_model.embed_texts([c.description() for c in taxonomy.categories]))
    logits = a @ b.T / temperature
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    return p / p.sum(axis=1, keepdims=True)


def visual_distribution(class_probs: np.ndarray, mapping: np.ndarray, min_mass: float = MIN_MASS
                        ) -> tuple[np.ndarray | None, float]:
    """Frames' ImageNet probabilities ``[N, 1000]`` (or clip-level ``[1000]``) -> (category
    distribution or None, mapped mass)."""
    p = np.asarray(class_probs, np.float64)
    p = p.mean(axis=0) if p.ndim == 2 else p
    scores = p @ mapping
    mass = float(scores.sum())
    if mass < min_mass:
        return None, mass
    return scores / mass, mass


class VisualEvidence:
    """Category evidence from a frame model: ``distribution(frames_uint8)`` -> ([C] or None, strength)."""

    def __init__(self, frame_model, taxonomy: Taxonomy, text_model=None, method: str = "table"):
        self.frame_model, self.taxonomy, self.method = frame_model, taxonomy, method
        self.ids = taxonomy.ids()
        self.kind = "clip" if hasattr(frame_model, "embed_texts") else "imagenet"
        if self.kind == "clip":
            prompts = [f"an advertisement for {c.name_en}: {', '.join(c.keywords[:6])}" for c in taxonomy.categories]
            self.prompt_embeddings = _unit(frame_model.embed_texts(prompts))
        elif not hasattr(frame_model, "classify"):
            raise ValueError(f"frame model {frame_model.info.name} gives no class scores: no visual category evidence")
        elif method == "embedding":
            if text_model is None:
                raise ValueError("the embedding method needs a text model")
            self.mapping = embedding_matrix(text_model, taxonomy)
        elif method == "table":
            self.mapping = table_matrix(self.ids)
        else:
            raise ValueError(f"unknown visual evidence method {method!r}; use one of {', '.join(METHODS)}")

    def from_class_probs(self, class_probs: np.ndarray) -> tuple[np.ndarray | None, float]:
        return visual_distribution(class_probs, self.mapping)

    def from_embeddings(self, image_embeddings: np.ndarray) -> tuple[np.ndarray | None, float]:
        """CLIP: frame embeddings ``[N, D]`` -> zero-shot distribution (strength = its max)."""
        e = _unit(np.atleast_2d(np.asarray(image_embeddings, np.float64)).mean(axis=0, keepdims=True))
        logits = (e @ self.prompt_embeddings.T)[0] / CLIP_TEMPERATURE
        p = np.exp(logits - logits.max())
        p /= p.sum()
        return p, float(p.max())

    def from_frame_embeddings(self, embeddings: np.ndarray) -> tuple[np.ndarray | None, float]:
        """The frame model's own embeddings of a clip ``[N, D]`` -> (distribution or None, strength);
        EfficientNet's class scores come from its classifier head on these features (no second pass)."""
        if self.kind == "clip":
            return self.from_embeddings(embeddings)
        if hasattr(self.frame_model, "classify_features"):
            return self.from_class_probs(self.frame_model.classify_features(embeddings))
        return None, 0.0

    def distribution(self, frames: np.ndarray) -> tuple[np.ndarray | None, float]:
        """uint8 RGB frames ``[N, H, W, 3]`` -> (category distribution or None, strength)."""
        if self.kind == "clip":
            return self.from_embeddings(self.frame_model.embed_images(frames))
        return self.from_class_probs(self.frame_model.classify(frames))


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, n, out=np.zeros_like(x), where=n > 0)
