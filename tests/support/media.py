"""Test media made on the spot: speech from espeak-ng, converted by ffmpeg; word error rate."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

SENTENCE = "The quick brown fox jumps over the lazy dog. Please call Stella and ask her to bring these things."


# espeak-ng's French, which whisper-base detects as French and translates with "capital" in its English
FRENCH_SENTENCE = ("La ville de Paris est la capitale de la France. Elle est célèbre pour la tour Eiffel, le musée "
                   "du Louvre et ses nombreux cafés.")


def speech_wav(path: Path, text: str = SENTENCE, voice: str | None = None) -> Path:
    language = ["-v", voice] if voice else []
    subprocess.run(["espeak-ng", *language, "-s", "150", "-w", str(path), text], check=True, capture_output=True)
    return path


def convert(src: Path, dst: Path, *extra: str) -> Path:
    subprocess.run(["ffmpeg", "-y", "-loglevel", "error", "-i", str(src), *extra, str(dst)], check=True)
    return dst


def long_text(words_wanted: int, seed: int = 7) -> str:
    """Varied, speakable English sentences (deterministic), for minutes of synthesized speech."""
    import random

    rng = random.Random(seed)
    subjects = ["the old farmer", "my sister", "a quiet student", "the tall doctor", "our neighbour", "the captain"]
    verbs = ["painted", "carried", "found", "opened", "cleaned", "sold", "watched", "repaired", "ordered"]
    objects = ["a red boat", "the wooden table", "seven green apples", "the morning paper", "a small garden",
               "the broken window", "two heavy boxes", "the kitchen door", "a bright lamp"]
    places = ["near the river", "after lunch", "in the village", "before sunrise", "at the market",
              "behind the school", "during the storm", "on the hill"]
    sentences, count = [], 0
    while count < words_wanted:
        sentence = f"{rng.choice(subjects)} {rng.choice(verbs)} {rng.choice(objects)} {rng.choice(places)}."
        sentences.append(sentence[0].upper() + sentence[1:])
        count += len(sentence.split())
    return " ".join(sentences)


def words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


def word_error_rate(reference: str, hypothesis: str) -> float:
    ref, hyp = words(reference), words(hypothesis)
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1] / max(len(ref), 1)


IMAGE_FORMATS = ("jpeg", "png", "webp", "gif")


def image_bytes(fmt: str = "png", size: tuple[int, int] = (48, 32),
                color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    """A small real image: a coloured field with a contrasting square, in the given Pillow format."""
    import io

    from PIL import Image, ImageDraw

    image = Image.new("RGB", size, color)
    ImageDraw.Draw(image).rectangle([size[0] // 4, size[1] // 4, size[0] // 2, size[1] // 2], fill=(20, 20, 220))
    out = io.BytesIO()
    image.save(out, format=fmt.upper())
    return out.getvalue()


def data_uri(data: bytes, mime: str = "image/png") -> str:
    import base64

    return f"data:{mime};base64," + base64.b64encode(data).decode()
