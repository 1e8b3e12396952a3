"""A tiny embedding model made by the tests: words of one concept share a vector.

Real files in the real formats (a ``tokenizers`` tokenizer, a safetensors
matrix) loaded by the real loader; only the vocabulary is small and chosen,
so a test knows which texts mean the same.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

# Each group: words that mean the same thing (one vector for all of them).
CONCEPTS: tuple[tuple[str, ...], ...] = (
    ("car", "automobile", "vehicle", "cars"),
    ("repair", "fixing", "mend", "garage"),
    ("bread", "loaf", "baking", "bakery"),
    ("ocean", "sea", "marine", "waves"),
    ("music", "song", "melody", "tune"),
    ("snake", "serpent", "reptile", "python"),
)
FILLER = ("the", "a", "of", "and", "for", "guide", "notes")


def write_safetensors(path: Path, matrix: np.ndarray, dtype: str = "F16") -> None:
    """`matrix` as a one-tensor safetensors file."""
    data = matrix.astype("<f2" if dtype == "F16" else "<f4").tobytes()
    header = json.dumps(
        {
            "embedding.weight": {
                "dtype": dtype,
                "shape": list(matrix.shape),
                "data_offsets": [0, len(data)],
            }
        }
    ).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header + data)


def write_tiny_model(
    directory: Path, concepts: Sequence[Sequence[str]] = CONCEPTS, seed: int = 0
) -> Path:
    """A model directory: one dimension per concept (plus a little noise), fillers near 0."""
    directory.mkdir(parents=True, exist_ok=True)
    vocabulary = {"[UNK]": 0}
    rows = [np.zeros(len(concepts) + 2)]
    rng = np.random.default_rng(seed)
    for number, words in enumerate(concepts):
        for word in words:
            vocabulary[word] = len(vocabulary)
            row = np.zeros(len(concepts) + 2)
            row[number] = 1.0
            row[-2:] = rng.normal(0, 0.05, 2)
            rows.append(row)
    for word in FILLER:
        vocabulary[word] = len(vocabulary)
        row = np.zeros(len(concepts) + 2)
        row[-1] = 0.1
        rows.append(row)
    tokenizer = Tokenizer(models.WordLevel(vocab=vocabulary, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.save(str(directory / "tokenizer.json"))
    write_safetensors(directory / "embeddings.safetensors", np.array(rows, dtype=np.float32))
    return directory
